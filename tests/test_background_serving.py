"""edge/background.py `serving`: the start-up tasks that wait for the hub's port share one probe of it, and a
probe whose waiters all left stops polling."""

from __future__ import annotations

import asyncio
import socket

from edge import background


def test_waiters_share_one_probe_and_it_ends_with_them() -> None:
    async def scenario() -> tuple[int, list[bool], int, int]:
        with socket.socket() as listener, socket.socket() as never:
            listener.bind(("127.0.0.1", 0))
            port = listener.getsockname()[1]
            waiting = [asyncio.create_task(background.serving("127.0.0.1", port)) for _ in range(4)]
            await asyncio.sleep(0.1)  # several polls: the port is bound but not listening yet
            probes_while_waiting = len(background._probes)
            listener.listen()
            answers = await asyncio.gather(*waiting)
            after = len(background._probes)

            never.bind(("127.0.0.1", 0))  # bound, never listening: nobody will answer
            lone = asyncio.create_task(background.serving("127.0.0.1", never.getsockname()[1]))
            await asyncio.sleep(0.05)
            lone.cancel()
            await asyncio.gather(lone, return_exceptions=True)
            await asyncio.sleep(0.05)
            return probes_while_waiting, answers, after, len(background._probes)

    probes, answers, after, left = asyncio.run(scenario())
    assert probes == 1
    assert answers == [True, True, True, True]
    assert after == 0 and left == 0
