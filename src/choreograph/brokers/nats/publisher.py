"""Pipelined JetStream publishes, waited for per batch; fire-and-forget frames.

nats-py's ``publish_async`` pays, per message, a semaphore wait wrapped in
``asyncio.wait_for``, a random token from the OS and a future with a done
callback; even its plain ``publish`` builds each protocol frame separately
(about 1.5 us, 3.8 us with headers). A :class:`BatchPublisher` writes a whole
batch as one buffer of ``PUB``/``HPUB`` frames with reply subjects
``<inbox>.<batch>.<index>`` on one wildcard subscription, counts the PubAcks
into one future per batch and waits for them with one timer.

Semantics are JetStream's: a message is stored once its PubAck says so; the
caller learns, per batch, the index of the first message that was not
acknowledged (error, no responders, or no answer in time) and resends from
there with the same ``Nats-Msg-Id`` headers, so a resend never duplicates.

:meth:`BatchPublisher.publish_fast` sends a *fast-ingest batch* (nats-server
2.14+, streams with ``allow_batched``): stored one by one in order, acknowledged
every ``flow`` messages and once at the end — a dozen answers per 1,000
messages instead of 1,000. Anything but a clean end (an error, a gap, no
answer) is reported as a failure of the whole batch, and the caller sends it
again message by message: the stream drops the copies by ``Nats-Msg-Id``.

:meth:`BatchPublisher.publish_atomic` sends an *atomic batch* (nats-server
2.12+, streams with ``allow_atomic``): stored all together or not at all, and
only the last message is answered — one PubAck for up to
:data:`ATOMIC_LIMIT` messages instead of one each.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Sequence
from typing import Any, Final

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

_NO_RESPONDERS: Final = "503"
_STATUS: Final = "Status"
ATOMIC_LIMIT: Final = 1000
"""Most messages nats-server takes in one atomic batch (its default ``max_batch_size``)."""
FAST_LIMIT: Final = 1000
"""Most messages choreograph puts in one fast-ingest batch."""
_FAST_FLOW: Final = 250
_CONNECTION_CHECK: Final = 0.1
"""Seconds between checks of the connection while waiting for answers: a lost connection ends the wait."""

Message = tuple[str, bytes, dict[str, str] | None]
"""(subject, payload, headers) of one JetStream publish."""


class _Batch:
    __slots__ = ("answered", "done", "errors", "outstanding")

    def __init__(self, size: int, done: asyncio.Future[None]) -> None:
        self.outstanding = size
        self.answered = bytearray(size)
        self.errors: dict[int, BaseException] = {}
        self.done = done

    def first_failure(self, timeout: float) -> tuple[int, BaseException | None]:
        """The first message not stored, in publish order, and why; ``(-1, None)`` if all are."""
        if not self.errors and not self.outstanding:
            return -1, None
        for index, answered in enumerate(self.answered):
            if index in self.errors:
                return index, self.errors[index]
            if not answered:
                return index, TimeoutError(f"no PubAck within {timeout}s")
        return -1, None


class BatchPublisher:
    """Publish batches to JetStream streams over one NATS connection. Safe to use from concurrent tasks."""

    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self._prefix = ""
        self._fast_prefix = ""
        self._batches: dict[int, _Batch] = {}
        self._fast: dict[int, tuple[asyncio.Future[BaseException | None], int]] = {}
        """Fast batches awaiting their end: number -> (why it failed, or None; how many messages)."""
        self._numbers = itertools.count()
        self._lock = asyncio.Lock()

    async def _subscribe(self) -> str:
        """Subscribe the reply inboxes (PubAcks; fast-batch answers) once; return the PubAck prefix."""
        if not self._prefix:
            async with self._lock:
                if not self._prefix:
                    fast = f"{self._nc.new_inbox()}."
                    await self._nc.subscribe(f"{fast}>", cb=self._on_fast_reply)
                    self._fast_prefix = fast
                    prefix = f"{self._nc.new_inbox()}."
                    await self._nc.subscribe(f"{prefix}>", cb=self._on_reply)
                    self._prefix = prefix
        return self._prefix

    async def publish_fast(self, messages: Sequence[Message], timeout: float) -> tuple[int, BaseException | None]:
        """Store ``messages`` (one stream, at most :data:`FAST_LIMIT`) in order.

        Returns ``(-1, None)`` once the server confirmed the whole batch, else
        ``(0, why)``: any prefix of it may be stored, so the caller sends all
        of it again: records carry a ``Nats-Msg-Id`` so the copies are dropped,
        inbox keys may be stored twice. The stream must allow batched publishes.
        """
        if not messages:
            return -1, None
        if len(messages) > FAST_LIMIT:
            raise ValueError(f"a fast batch holds at most {FAST_LIMIT} messages, got {len(messages)}")
        await self._subscribe()
        number = next(self._numbers)
        # <batch>.<flow>.<gap mode>.<sequence>.<operation>.$FI: operation 0 starts, 1 adds, 3 ends the batch
        base = f"{self._fast_prefix}{number}.{_FAST_FLOW}.fail."
        limit = self._nc.max_payload
        frames = [
            frame(subject, f"{base}{index}.{0 if index == 1 else 1}.$FI", payload, headers, limit)
            for index, (subject, payload, headers) in enumerate(messages, 1)
        ]
        frames.append(frame(messages[0][0], f"{base}{len(messages) + 1}.3.$FI", b"", None))
        done: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
        self._fast[number] = (done, len(messages))
        try:
            await send_frames(self._nc, frames)
            if await self._answered(done, timeout):
                failure = done.result()
            else:
                failure = TimeoutError(f"no end of batch acknowledged within {timeout}s")
        finally:
            del self._fast[number]
        return (-1, None) if failure is None else (0, failure)

    async def _on_fast_reply(self, msg: Msg) -> None:
        waiting = self._fast.get(int(msg.subject[len(self._fast_prefix) :].partition(".")[0]))
        if waiting is None or waiting[0].done():
            return  # after the batch was given up
        done, count = waiting
        data = msg.data
        if b'"type":"ack"' in data:
            return  # flow control: the server keeps up
        if msg.headers and msg.headers.get(_STATUS) == _NO_RESPONDERS:
            done.set_result(nats.js.errors.NoStreamResponseError())
        elif b'"type":' in data:  # "err" or "gap": part of the batch may be missing
            done.set_result(nats.js.errors.APIError(description=f"fast batch interrupted: {data[:200]!r}"))
        else:  # the end of the batch: {"stream", "seq", "batch", "count"} or an error
            failure = _failure(msg)
            if failure is None and _count(data) != count:
                failure = nats.js.errors.APIError(description=f"fast batch ended short: {data[:200]!r}")
            done.set_result(failure)

    async def publish(self, messages: Sequence[Message], timeout: float) -> tuple[int, BaseException | None]:
        """Send ``messages`` in order and wait up to ``timeout`` s for their PubAcks.

        Returns ``(-1, None)`` when every message is stored, else the index of
        the first one that is not known to be stored and why. Messages after
        that index may or may not be stored. Raises what the connection raises
        while sending (closed, reconnect buffer full).
        """
        if not messages:
            return -1, None
        prefix = await self._subscribe()
        number = next(self._numbers)
        batch = _Batch(len(messages), asyncio.get_running_loop().create_future())
        reply = f"{prefix}{number}."
        limit = self._nc.max_payload
        frames = [
            frame(subject, f"{reply}{index}", payload, headers, limit)
            for index, (subject, payload, headers) in enumerate(messages)
        ]
        return await self._await(number, batch, frames, timeout)

    async def publish_atomic(self, messages: Sequence[Message], timeout: float) -> tuple[int, BaseException | None]:
        """Store ``messages`` (one stream, at most :data:`ATOMIC_LIMIT`) all together or not at all.

        Returns ``(-1, None)`` once the commit is acknowledged, else ``(0, why)``:
        then none of them may be stored, or (an acknowledgement lost) all of
        them; sending them again is a new batch. The stream must allow atomic
        publishes.
        """
        if not messages:
            return -1, None
        if len(messages) > ATOMIC_LIMIT:
            raise ValueError(f"an atomic batch holds at most {ATOMIC_LIMIT} messages, got {len(messages)}")
        prefix = await self._subscribe()
        number = next(self._numbers)
        batch = _Batch(1, asyncio.get_running_loop().create_future())
        tag = f"{prefix[:-1].rpartition('.')[2]}-{number}"  # the inbox token: unique per connection
        last = len(messages) - 1
        limit = self._nc.max_payload
        frames = []
        for index, (subject, payload, headers) in enumerate(messages):
            marks = {**(headers or {}), "Nats-Batch-Id": tag, "Nats-Batch-Sequence": str(index + 1)}
            reply = ""
            if index == last:
                marks["Nats-Batch-Commit"] = "1"
                reply = f"{prefix}{number}.0"
            frames.append(frame(subject, reply, payload, marks, limit))
        return await self._await(number, batch, frames, timeout)

    async def _await(
        self, number: int, batch: _Batch, frames: list[bytes], timeout: float
    ) -> tuple[int, BaseException | None]:
        self._batches[number] = batch
        try:
            await send_frames(self._nc, frames)
            await self._answered(batch.done, timeout)
        finally:
            del self._batches[number]
        return batch.first_failure(timeout)

    async def _answered(self, done: asyncio.Future[Any], timeout: float) -> bool:
        """Wait until ``done``, for at most ``timeout`` seconds, or until the connection is lost; return whether done.

        A lost connection ends the wait at once: what was sent may never be
        answered, and the caller decides (a publish fails at once, naming the broker).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not done.done():
            remaining = deadline - loop.time()
            if remaining <= 0 or not self._nc.is_connected:
                break
            await asyncio.wait([done], timeout=min(remaining, _CONNECTION_CHECK))
        return done.done()

    async def _on_reply(self, msg: Msg) -> None:
        batch_no, _, index_text = msg.subject[len(self._prefix) :].partition(".")
        batch = self._batches.get(int(batch_no))
        if batch is None or batch.done.done():
            return  # a reply after its batch gave up waiting
        index = int(index_text)
        if batch.answered[index]:
            return
        batch.answered[index] = 1
        error = _failure(msg)
        if error is not None:
            batch.errors[index] = error
        batch.outstanding -= 1
        if batch.outstanding == 0:
            batch.done.set_result(None)


def _count(data: bytes) -> int | None:
    """How many messages the end-of-batch answer ``data`` says the batch held."""
    try:
        count = json.loads(data).get("count")
    except (ValueError, AttributeError):
        return None
    return count if isinstance(count, int) else None


def _failure(msg: Msg) -> BaseException | None:
    """Return why the PubAck ``msg`` says the message was not stored, or None if it was."""
    if msg.headers and msg.headers.get(_STATUS) == _NO_RESPONDERS:
        return nats.js.errors.NoStreamResponseError()
    data = msg.data
    if b'"error"' not in data:
        return None  # {"stream": ..., "seq": ...} (possibly "duplicate": true): stored
    try:
        answer: dict[str, Any] = json.loads(data)
        error = answer.get("error")
        if not isinstance(error, dict):
            return None
        nats.js.errors.APIError.from_error(error)  # raises the matching subclass (it never returns)
    except nats.js.errors.APIError as failure:
        return failure
    except (ValueError, TypeError, KeyError) as exc:  # not a PubAck we can read: not known to be stored
        return nats.js.errors.APIError(description=f"unreadable PubAck {data[:200]!r}: {exc}")
    return nats.js.errors.APIError(description=f"unreadable PubAck {data[:200]!r}")


def frame(subject: str, reply: str, payload: bytes, headers: dict[str, str] | None, limit: int = 0) -> bytes:
    """The ``PUB``/``HPUB`` protocol frame of one message.

    Subjects are choreograph's own (validated prefix, escaped names); header
    names and values come from :func:`naming.to_wire` and
    :func:`naming.message_id` (no line breaks). Raises MaxPayloadError past
    ``limit`` bytes (the server's ``max_payload``; 0: no check), which the
    server would answer by closing the connection.
    """
    if not headers:
        if limit and len(payload) > limit:
            raise nats.errors.MaxPayloadError
        return b"PUB %s %s %d\r\n%s\r\n" % (subject.encode(), reply.encode(), len(payload), payload)
    head = ("NATS/1.0\r\n" + "".join([f"{name}: {value}\r\n" for name, value in headers.items()]) + "\r\n").encode()
    if limit and len(head) + len(payload) > limit:  # the server counts headers in
        raise nats.errors.MaxPayloadError
    return b"HPUB %s %s %d %d\r\n%s%s\r\n" % (
        subject.encode(),
        reply.encode(),
        len(head),
        len(head) + len(payload),
        head,
        payload,
    )


async def send_frames(nc: Client, frames: list[bytes]) -> None:
    """Write ``frames`` to the connection as one buffer; like ``publish``, queued while reconnecting.

    Uses nats-py's outbound queue (``_send_command``/``_flush_pending``), the
    path its own ``publish`` takes after building a frame. Raises
    ConnectionClosedError or OutboundBufferLimitError as ``publish`` would.
    """
    if nc.is_closed:
        raise nats.errors.ConnectionClosedError
    if nc.is_draining_pubs:
        raise nats.errors.ConnectionDrainingError
    data = b"".join(frames)
    if not nc.is_connected:
        limit = nc._max_pending_size
        if limit <= 0 or len(data) + nc._pending_data_size > limit:
            raise nats.errors.OutboundBufferLimitError
    await nc._send_command(data)
    if nc._flush_queue is not None and nc._flush_queue.empty():
        await nc._flush_pending()
