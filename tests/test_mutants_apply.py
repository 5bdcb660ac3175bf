"""`make mutants` breaks the code at fixed places: each must still be there, exactly once,
or the run stops. Checked here, in every test run, so it cannot rot between runs."""

import pytest

from tests.mutants import MUTANTS, ROOT, Mutant


@pytest.mark.parametrize("mutant", MUTANTS, ids=[mutant.name for mutant in MUTANTS])
def test_each_mutant_applies_to_the_code_as_it_is(mutant: Mutant) -> None:
    assert (ROOT / mutant.path).read_text().count(mutant.original) == 1
    for test in mutant.tests:
        path, _, name = test.partition("::")  # a file, or one test of it (a node id)
        assert (ROOT / path).is_file(), test
        assert not name or f"def {name}(" in (ROOT / path).read_text(), test
