"""The observer's state machine for one flow, free of any I/O.

A :class:`FlowTracker` applies envelopes to instances, evaluates deadlines
and compensations against a time it is given, and queues notices (stuck,
completed, compensation problems) exactly once per instance. It is used by
the live :class:`~choreograph.observe.flows.observer.Observer` and by the
log replay in :func:`~choreograph.observe.flows.replay.summarize`.

Time-based judgements (a deadline passed, a compensation overdue) are made
against the time the caller passes; the observer passes ``judge=False`` while
it applies what it reads and judges in :meth:`FlowTracker.check` only, against
the time up to which it has read the log.

Memory: an instance that is finished (final, nothing pending, every notice
sent) can leave memory once saved (:meth:`FlowTracker.retire`); its figures
stay in :attr:`FlowTracker.retired`. Past ``cap`` instances in memory the
oldest clean ones leave too, open or not; the observer reloads an instance
from its store when an event, a due time or a dead letter concerns it.

Not safe for concurrent use from several threads; within one event loop
every method runs to completion without awaiting.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from choreograph.core.envelope import Envelope
from choreograph.core.event import Event
from choreograph.observe.flows.events import FlowCompensationMissing, FlowCompleted, FlowStuck
from choreograph.observe.flows.figures import FiguresTally, FlowFigures, compute
from choreograph.observe.flows.flow import Flow
from choreograph.observe.flows.instance import (
    COMP_FAILED,
    COMP_MISSING,
    COMP_PENDING,
    Instance,
    Seen,
    parse_time,
)

STUCK = "stuck"
FINAL = "final"
COMPENSATION = "compensation"


class FlowTracker:
    """Follows every instance of one flow, keyed by correlation id.

    Applying an event is idempotent on (correlation id, event id) and
    independent of arrival order. Changed instances are remembered until
    :meth:`take_dirty` hands them to the store.
    """

    def __init__(self, flow: Flow, instances: Iterable[Instance] = (), *, notify: bool = True) -> None:
        self.flow = flow
        self.notify = notify
        self.instances: dict[str, Instance] = {}
        self._dirty: set[str] = set()
        self._watched: set[str] = set()
        """Instances that may still change state with time alone (not final, or compensation pending)."""
        self._outbox: set[str] = set()
        """Instances with a notice not yet published."""
        self.applied = 0
        self.duplicates = 0
        self.retired = FiguresTally()
        """Figures of the instances that left memory finished."""
        self.evicted_open = False
        """True once an open instance left memory over the cap: the store then holds instances to check."""
        for instance in instances:
            self.instances[instance.correlation_id] = instance
            self._watch(instance, None)
            if not all(instance.notices.values()):
                self._outbox.add(instance.correlation_id)

    # -- input -----------------------------------------------------------

    def apply(self, envelope: Envelope, *, now: float, log_time: float | None = None, judge: bool = True) -> bool:
        """Record ``envelope`` if the flow mentions its type; return True if it was new.

        The event's time is its envelope ``time``, else ``log_time``, else ``now``.
        With ``judge`` false no deadline or compensation timeout is judged
        (only :meth:`check` does), so ``now`` is only when it was observed.
        """
        if envelope.type not in self.flow.types:
            return False
        correlation_id = envelope.correlationid or envelope.id
        instance = self.instances.get(correlation_id)
        if instance is None:
            instance = self.instances[correlation_id] = Instance(self.flow.name, correlation_id)
        when = parse_time(envelope.time) or log_time or now
        seen = Seen(envelope.id, envelope.type, when, envelope.source, envelope.causationid, now)
        if not instance.add(seen):
            self.duplicates += 1
            return False
        self.applied += 1
        self._dirty.add(correlation_id)
        self._evaluate(instance, now, judge)
        return True

    def on_dead_letter(
        self, correlation_id: str, event_type: str | None, group: str, detail: str, now: float, *, judge: bool = True
    ) -> bool:
        """Mark compensations failed that a dead letter of the trigger event explains; return True on change."""
        instance = self.instances.get(correlation_id)
        if instance is None or event_type is None:
            return False
        changed = False
        for index, rule in enumerate(self.flow.compensations):
            if index in instance.failed_compensations:
                continue
            if rule.handler is not None and rule.handler != group:
                continue
            if rule.when and not any(ref.type == event_type for ref in rule.when):
                continue
            if not rule.when and rule.handler is None:
                continue
            instance.failed_compensations[index] = detail
            changed = True
        if changed:
            self._dirty.add(correlation_id)
            self._evaluate(instance, now, judge)
        return changed

    def check(self, now: float) -> None:
        """Evaluate deadlines and compensation timeouts of watched instances at ``now``."""
        for correlation_id in list(self._watched):
            self._evaluate(self.instances[correlation_id], now)

    # -- evaluation ------------------------------------------------------

    def _watch(self, instance: Instance, compensations: list[str] | None) -> None:
        flow = self.flow
        pending = compensations if compensations is not None else []
        if compensations is None and flow.compensations:
            pending = [c.state for c in instance.compensations(flow, float("-inf"))]
        if instance.final(flow) is None or COMP_PENDING in pending:
            self._watched.add(instance.correlation_id)
        else:
            self._watched.discard(instance.correlation_id)

    def _evaluate(self, instance: Instance, now: float, judge: bool = True) -> None:
        flow = self.flow
        states = instance.compensations(flow, now if judge else -math.inf)
        notices = instance.notices
        before = len(notices)
        sent = not self.notify
        if instance.final(flow) is not None:
            notices.setdefault(FINAL, sent)
        elif judge and STUCK not in notices and instance.is_stuck(flow, now):
            notices[STUCK] = sent
        for state in states:
            if state.state in (COMP_MISSING, COMP_FAILED):
                notices.setdefault(f"{COMPENSATION}.{state.index}.{state.state}", sent)
        if len(notices) != before:
            self._dirty.add(instance.correlation_id)
            if self.notify:
                self._outbox.add(instance.correlation_id)
        self._watch(instance, [s.state for s in states])

    def notice(self, instance: Instance, key: str, now: float) -> Event:
        """Build the event of notice ``key`` from the instance's state at ``now``."""
        flow = self.flow
        cid = instance.correlation_id
        if key == FINAL:
            final = instance.final(flow)
            if final is None:
                raise ValueError(f"instance {cid} of flow {flow.name} is not final")
            return FlowCompleted(
                flow=flow.name,
                correlation_id=cid,
                outcome=instance.status(flow),
                final_event_type=final.type,
                duration=instance.duration(flow),
            )
        if key == STUCK:
            return FlowStuck(
                flow=flow.name,
                correlation_id=cid,
                started_at=instance.started_at(flow),
                due_at=instance.due_at(flow),
                waiting_for=instance.waiting_for(flow, now),
                last_event_type=instance.timeline()[-1].type,
            )
        _, index, problem = key.split(".")
        rule = flow.compensations[int(index)]
        state = next((s for s in instance.compensations(flow, now) if s.index == int(index)), None)
        return FlowCompensationMissing(
            flow=flow.name,
            correlation_id=cid,
            compensation=rule.name,
            problem=problem,
            detail=state.detail if state is not None and state.state == problem else "",
        )

    # -- output ----------------------------------------------------------

    def take_dirty(self) -> list[Instance]:
        """Return the instances changed since the last call, marked (:meth:`mark`) for the store, and forget them."""
        dirty = [self.mark(self.instances[cid]) for cid in self._dirty]
        self._dirty.clear()
        return dirty

    def mark(self, instance: Instance) -> Instance:
        """Set ``instance``'s ``wake_at`` and ``finished_at`` from its state; return it."""
        flow = self.flow
        times: list[float] = []
        if not all(instance.notices.values()):
            times.append(-math.inf)
        final = instance.final(flow)
        if final is None and STUCK not in instance.notices:
            times.append(instance.due_at(flow))
        for state in instance.compensations(flow, -math.inf):
            missing = f"{COMPENSATION}.{state.index}.{COMP_MISSING}"
            if state.state == COMP_PENDING and missing not in instance.notices:  # else time changes nothing more
                times.append(state.trigger_time + state.rule.timeout)
        instance.wake_at = min(times, default=None)
        instance.finished_at = final.time if final is not None and instance.wake_at is None else None
        return instance

    # -- memory ------------------------------------------------------------

    def restore(self, instance: Instance, *, cap: int | None = None) -> bool:
        """Take in a stored instance at start-up; return True if it stays in memory.

        A finished one only adds to :attr:`retired`; an open one stays while
        fewer than ``cap`` are held (else it waits in the store: ``evicted_open``).
        """
        self.mark(instance)
        if instance.finished_at is not None:
            self.retired.add(self.flow, instance, math.inf)
            return False
        if cap is not None and len(self.instances) >= cap:
            self.evicted_open = True
            return False
        self._hold(instance)
        return True

    def adopt(self, instance: Instance) -> bool:
        """Take back an instance that left memory (loaded from the store); False if one is held already.

        The held one is never older than the store's: an instance leaves memory only once saved.
        """
        if instance.correlation_id in self.instances:
            return False
        self.mark(instance)
        if instance.finished_at is not None:  # its figures were folded into `retired` when it left
            self.retired.add(self.flow, instance, math.inf, sign=-1)
        self._hold(instance)
        return True

    def _hold(self, instance: Instance) -> None:
        self.instances[instance.correlation_id] = instance
        self._watch(instance, None)
        if not all(instance.notices.values()):
            self._outbox.add(instance.correlation_id)

    def retire(self, saved: Sequence[Instance], cap: int) -> int:
        """Let instances leave memory once stored; return how many left.

        Each of ``saved`` (just stored) that is finished leaves, its figures
        folded into :attr:`retired`. Then, while more than ``cap`` are held,
        the oldest held instances leave too, except those with unsaved changes
        or unsent notices: they wait in the store, and the observer loads them
        back when an event, a due time or a dead letter concerns them.
        """
        gone = 0
        for instance in saved:
            cid = instance.correlation_id
            if instance.finished_at is None or cid in self._dirty or cid in self._outbox:
                continue
            if self.instances.get(cid) is instance:
                del self.instances[cid]
                self._watched.discard(cid)
                self.retired.add(self.flow, instance, math.inf)
                gone += 1
        excess = len(self.instances) - cap
        if excess > 0:
            victims = []
            for cid in self.instances:
                if cid not in self._dirty and cid not in self._outbox:
                    victims.append(cid)
                    if len(victims) >= excess:
                        break
            for cid in victims:
                instance = self.instances.pop(cid)
                self._watched.discard(cid)
                if instance.finished_at is not None:
                    self.retired.add(self.flow, instance, math.inf)
                else:
                    self.evicted_open = True
            gone += len(victims)
        return gone

    def mark_dirty(self, instance: Instance) -> None:
        """Remember ``instance`` as changed again (for example after a failed commit)."""
        self._dirty.add(instance.correlation_id)

    def pending_notices(self) -> list[tuple[Instance, str]]:
        """(instance, notice key) of every notice not yet published, oldest correlation first."""
        owed = []
        for cid in sorted(self._outbox):
            instance = self.instances[cid]
            owed += [(instance, key) for key, sent in instance.notices.items() if not sent]
        return owed

    def mark_sent(self, instance: Instance, key: str) -> None:
        """Record that notice ``key`` of ``instance`` was published (persisted with the next commit)."""
        instance.notices[key] = True
        self._dirty.add(instance.correlation_id)
        if all(instance.notices.values()):
            self._outbox.discard(instance.correlation_id)

    def figures(self, now: float) -> FlowFigures:
        """Return the flow's figures at ``now``: the instances held, and those that left memory finished.

        Open instances that left memory over the cap are not counted until loaded back.
        """
        return compute(self.flow, self.instances.values(), now, retired=self.retired)
