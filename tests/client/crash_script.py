"""A client process for the kill -9 test: `python -m tests.client.crash_script URL STATE`.

It continues (or starts) the session its token file holds, sends one turn per line of stdin
(a JSON object: the turn's input) and prints one JSON line per outcome."""

import json
import sys

from baton_client import Client, FileTokenStore, RetryPolicy


def main() -> None:
    url, state = sys.argv[1:3]
    with Client(url, retry=RetryPolicy(base_delay=0.01, max_delay=0.2, deadline=20)) as client:
        session = client.session(FileTokenStore(state))
        for line in sys.stdin:
            outcome = session.send(json.loads(line))
            print(
                json.dumps(
                    {
                        "sessionId": outcome.session_id,
                        "turn": outcome.turn,
                        "replayed": outcome.replayed,
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
