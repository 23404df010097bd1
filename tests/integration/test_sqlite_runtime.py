"""The runtime on the SQLite log: durable attempts and dead letters across restarts."""

from __future__ import annotations

from pathlib import Path

from choreograph import App, ConsumerConfig, Context, Event, RetryPolicy
from tests.conftest import wait_until

FAST = ConsumerConfig(fetch_timeout=0.02, batch_size=100)


class Charge(Event, type="t.charge"):
    order_id: str


async def test_attempts_survive_a_worker_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/log.db"
    policy = RetryPolicy(immediate=0, delayed=3, base_delay=0.05, jitter=0.0)
    attempts: list[int] = []

    def build() -> App:
        app = App("pay", broker=url, consumer=FAST)

        @app.service("pay").on(Charge, retry=policy)
        async def capture(event: Charge, ctx: Context) -> None:
            attempts.append(ctx.attempt)
            raise ConnectionError("gateway down")

        return app

    # Given a handler that failed twice in a first worker
    first = build()
    await first.publish(Charge(order_id="o1"), key="o1")
    await first.start()
    await wait_until(lambda: len(attempts) >= 2, what="two attempts")
    await first.close()
    seen_before = len(attempts)
    # When a new worker starts on the same log
    second = build()
    await second.start()
    await wait_until(lambda: second.stats()["pay.capture"].dead_letters == 1, what="the dead letter")
    await second.close()
    # Then it continues counting where the first stopped, and gives up after 1 + 3 attempts
    assert attempts == [1, 2, 3, 4][: len(attempts)]
    assert len(attempts) == 4
    assert seen_before >= 2
    reader = App("ops", broker=url)
    (dead,) = await reader.broker.dead_letters()  # type: ignore[attr-defined]
    assert dead.attempts == 4
    assert dead.last_failure >= dead.first_failure
    await reader.close()
