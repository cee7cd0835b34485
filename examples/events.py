"""Events you can rely on: a reconnecting event stream, and wait_for built on the same feed."""

from __future__ import annotations

import itertools

from _backend import backend

from wrenn import WrennClient


def main() -> None:
    with backend() as keys, WrennClient(**keys) as client:
        # The stream reconnects by default; a reconnect after which events may be missing
        # is reported here (wrenn.local resumes from its event ids: no gap there).
        gaps = []
        with client.events.stream(on_gap=gaps.append) as events:
            first = next(events)
            print(f"subscribed: {first.event}")
            capsule = client.capsules.create(wait=False)
            for event in itertools.islice(events, 50):  # bounded, for the example
                print(f"event: {event.event} {event.resource.id if event.resource else ''}")
                if event.resource is not None and event.resource.id == capsule.id:
                    break
        ready = client.capsules.wait_for(capsule.id, "running", timeout=120)
        print(f"wait_for: {ready.id} is {ready.status}; gaps seen: {len(gaps)}")
        client.capsules.destroy(capsule.id)
    print("done")


if __name__ == "__main__":
    main()
