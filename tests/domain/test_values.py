"""Baton's own value types (domain/values.py): compared and hashed by value, slotted, and
immutable to the type checker; the types application code builds stay frozen at runtime."""

import dataclasses
import textwrap
from pathlib import Path

import pytest
from mypy import api as mypy_api

from baton.domain.handler import Turn
from baton.domain.outcomes import Finished, Parked
from baton.domain.state import Claim
from baton.domain.values import value


@value(kw_only=True)
class Point:
    x: int
    y: int = 0


def test_a_value_compares_and_hashes_by_its_fields_and_has_no_dict() -> None:
    assert Claim(turn=1, seq=2) == Claim(turn=1, seq=2)
    assert Claim(turn=1, seq=2) != Claim(turn=1, seq=3)
    assert hash(Claim(turn=1, seq=2)) == hash(Claim(turn=1, seq=2))
    assert len({Claim(turn=1, seq=2), Claim(turn=1, seq=2)}) == 1
    assert not hasattr(Claim(turn=1, seq=2), "__dict__")  # slots: no stray attribute lands
    assert dataclasses.replace(Point(x=1), y=2) == Point(x=1, y=2)


def test_kw_only_is_honoured() -> None:
    with pytest.raises(TypeError):
        Point(1)  # type: ignore[misc]


def test_what_application_code_builds_or_is_handed_stays_frozen_at_runtime() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Finished("x", state=None).output = "changed"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        Parked("y", state=None).wait = "changed"  # type: ignore[misc]
    assert dataclasses.fields(Turn)  # a dataclass ...
    assert Turn.__dataclass_params__.frozen  # type: ignore[attr-defined]  # ... and frozen


def test_the_type_checker_refuses_an_assignment_to_a_field(tmp_path: Path) -> None:
    """The runtime lets a field be set; mypy --strict (make test) is what keeps it
    immutable, through dataclass_transform(frozen_default=True). This fails if a mypy
    release stopped honouring that."""
    checked = tmp_path / "mutates.py"
    checked.write_text(
        textwrap.dedent(
            """
            from baton.domain.events import Lease
            from baton.domain.state import Claim

            def mutate(claim: Claim, lease: Lease) -> None:
                claim.seq = 3
                lease.owner = "someone else"
            """
        )
    )
    cache = Path(__file__).parents[2] / ".mypy_cache"  # make lint's: typeshed is read, not redone
    out, _, status = mypy_api.run(["--strict", "--cache-dir", str(cache), str(checked)])
    assert status == 1, out
    assert 'Property "seq" defined in "Claim" is read-only' in out
    assert 'Property "owner" defined in "Lease" is read-only' in out
