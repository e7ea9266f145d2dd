"""The residency decision tree as a pure unit: events in, actions out, on a clock the test owns.

The real-process behaviour (servers started, swapped, killed) is in test_residency.py; this file
pins down each branch of the tree with exact times, which real processes cannot give.
"""

from __future__ import annotations

from localroute.residency.scheduler import (
    Fail,
    Grant,
    InstanceSpec,
    Load,
    Policy,
    Scheduler,
    State,
    Unload,
)

GB = 10**9


def sched(*specs: InstanceSpec, budget: int = 2 * GB, **kw: object) -> Scheduler:
    return Scheduler(list(specs), budget=budget, **kw)  # type: ignore[arg-type]


def spec(name: str, size: int = GB, *, pinned: bool = False, ttl: float | None = None,
         load_s: float = 5.0) -> InstanceSpec:
    return InstanceSpec(name=name, model=f"model-{name}", footprint=size, pinned=pinned,
                        idle_ttl=ttl, load_estimate_s=load_s)


def kinds(actions: list[object]) -> list[tuple[str, str]]:
    return [(type(a).__name__, getattr(a, "instance", "")) for a in actions]


def ready(s: Scheduler, name: str, at: float = 0.0, load_s: float = 1.0) -> None:
    s.arrive(-1, name, at)
    assert kinds(s.step(at)) == [("Load", name)]
    s.load_done(name, at, load_s)
    (grant,) = s.step(at)
    assert isinstance(grant, Grant)
    s.release(name, at)


def test_many_requests_for_a_stopped_model_cause_one_load_and_all_wait_on_it() -> None:
    s = sched(spec("a"))
    for i in range(10):
        s.arrive(i, "a", 0.0)
    first = s.step(0.0)
    assert first == [Load("a", "request")]
    assert s.step(0.1) == []  # starting: the others join the same load
    s.load_done("a", 1.0, 1.0)
    grants = s.step(1.0)
    assert sorted(g.waiter for g in grants if isinstance(g, Grant)) == list(range(10))
    assert s.instances["a"].in_flight == 10 and s.instances["a"].loads == 1


def test_a_load_that_does_not_fit_unloads_an_idle_model_then_waits_for_it() -> None:
    s = sched(spec("a"), spec("b"), budget=GB)  # one at a time
    ready(s, "a")
    s.arrive(1, "b", 10.0)
    (unload,) = s.step(10.0)
    assert isinstance(unload, Unload)
    assert (unload.instance, unload.cause, unload.for_instance, unload.idle_s) == (
        "a", "memory", "b", 10.0)
    # One use 10 s ago over the default 60 s horizon: P(needed) = 1 - exp(-exp(-10/60)) =
    # 0.571; the measured load took 1 s, so evicting it is expected to cost 0.571 s.
    assert unload.expected_cost_s == 0.571
    assert s.instances["a"].state == State.stopping
    assert s.step(10.5) == []  # b waits for the memory
    s.unload_done("a", 11.0)
    assert s.step(11.0) == [Load("b", "request", ("a",))]  # after_unloads: wait for memory


def test_a_busy_model_is_never_cut_and_is_overtaken_only_for_max_overtake_s() -> None:
    s = sched(spec("a"), spec("b"), budget=GB, max_overtake_s=30.0)
    ready(s, "a")
    s.arrive(1, "a", 1.0)
    assert kinds(s.step(1.0)) == [("Grant", "a")]  # a long call on a
    s.arrive(2, "b", 2.0)
    assert s.step(2.0) == []  # a is busy: b waits, nothing is unloaded
    s.arrive(3, "a", 5.0)
    assert kinds(s.step(5.0)) == [("Grant", "a")]  # resident a still serves (A A B B)
    # The starvation bound: b has waited 30 s, so a is drained: no new grants for it ...
    s.arrive(4, "a", 33.0)
    assert s.step(33.0) == []
    assert s.instances["a"].draining and s.instances["a"].state == State.ready
    s.release("a", 40.0)
    assert s.step(40.0) == []  # one call still in flight: never cut
    s.release("a", 50.0)
    (unload,) = s.step(50.0)
    assert unload == Unload("a", "memory", "b", 0.0, unload.expected_cost_s)
    s.unload_done("a", 51.0)
    assert s.step(51.0) == [Load("b", "request", ("a",))]
    s.load_done("b", 52.0, 1.0)
    assert kinds(s.step(52.0)) == [("Grant", "b")]
    assert 4 in s.waiters  # a's queued request waits for its turn


def test_min_residency_protects_a_fresh_model_until_it_expires() -> None:
    s = sched(spec("a"), spec("b"), budget=GB, min_residency=30.0)
    ready(s, "a", at=0.0)
    s.arrive(1, "b", 5.0)
    assert s.step(5.0) == []
    assert s.next_wakeup(5.0) == 30.0  # the end of a's window
    assert kinds(s.step(30.0)) == [("Unload", "a")]


def test_eviction_keeps_the_model_likely_to_be_needed_and_lru_does_not() -> None:
    def scenario(policy: Policy) -> str:
        s = sched(spec("busy"), spec("quiet"), spec("new"), budget=2 * GB, policy=policy)
        ready(s, "quiet", at=0.0)
        ready(s, "busy", at=1.0)
        for t in range(2, 50):  # busy is asked for all the time ...
            s.arrive(100 + t, "busy", float(t))
            s.step(float(t))
            s.release("busy", float(t))
        s.arrive(200, "quiet", 55.0)  # ... quiet once more, so it is the most recent
        s.step(55.0)
        s.release("quiet", 55.0)
        s.arrive(1, "new", 60.0)
        (unload,) = s.step(60.0)
        assert isinstance(unload, Unload)
        return unload.instance

    assert scenario(Policy.cost) == "quiet"  # low probability of being needed: cheap to evict
    assert scenario(Policy.lru) == "busy"  # least recently used, though needed most


def test_single_policy_keeps_one_on_demand_model_even_when_more_fit() -> None:
    s = sched(spec("a"), spec("b"), budget=3 * GB, policy=Policy.single)
    ready(s, "a")
    s.arrive(1, "b", 1.0)
    assert kinds(s.step(1.0)) == [("Unload", "a")]
    s.unload_done("a", 2.0)
    assert s.step(2.0) == [Load("b", "request", ("a",))]


def test_pinned_models_are_never_evicted_and_always_load() -> None:
    s = sched(spec("p", GB, pinned=True), spec("a"), spec("b"), budget=2 * GB)
    ready(s, "p")
    ready(s, "a")
    s.arrive(1, "b", 100.0)
    assert kinds(s.step(100.0)) == [("Unload", "a")]  # not p
    assert s.unload("p") is False


def test_idle_ttl_counts_from_the_last_completed_call_only_while_idle() -> None:
    s = sched(spec("a", ttl=10.0))
    ready(s, "a", at=0.0)
    s.arrive(1, "a", 5.0)
    s.step(5.0)  # a call from 5 s ...
    assert s.step(16.0) == []  # ... still in flight at 16: no TTL while busy
    s.release("a", 20.0)
    assert s.next_wakeup(20.0) == 30.0
    assert s.step(29.9) == []
    assert s.step(30.0) == [Unload("a", "idle_ttl", None, 10.0, None)]


def test_a_request_arriving_while_its_model_stops_gets_a_fresh_start() -> None:
    s = sched(spec("a", ttl=1.0))
    ready(s, "a", at=0.0)
    assert kinds(s.step(2.0)) == [("Unload", "a")]
    s.arrive(1, "a", 2.1)
    assert s.step(2.1) == []  # stopping: it waits for the stop, never for a dead server
    s.unload_done("a", 3.0)
    assert s.step(3.0) == [Load("a", "request")]


def test_every_waiter_ends_in_a_grant_an_error_or_a_timeout() -> None:
    s = sched(spec("a"), spec("b"), budget=GB, queue_timeout_s=60.0, max_overtake_s=1000.0)
    ready(s, "a")
    s.arrive(1, "a", 1.0)
    s.step(1.0)  # a busy for good
    s.arrive(2, "b", 2.0)
    assert s.step(61.9) == []
    (fail,) = s.step(62.0)
    assert isinstance(fail, Fail) and fail.timeout and fail.waiter == 2
    assert "waited 60 s (queue_timeout_s 60)" in fail.reason and "a (1 in flight)" in fail.reason
    s.arrive(3, "b", 70.0)  # a load that fails fails every waiter with the reason
    s.release("a", 70.0)
    s.step(70.0)
    s.unload_done("a", 70.5)
    assert s.step(70.5) == [Load("b", "request", ("a",))]
    s.arrive(4, "b", 71.0)
    failed = s.load_failed("b", "boom")
    assert sorted(f.waiter for f in failed if isinstance(f, Fail)) == [3, 4]
    assert s.instances["b"].state == State.failed


def test_a_model_that_died_is_restarted_by_the_next_request() -> None:
    s = sched(spec("a"))
    ready(s, "a")
    s.lost("a", "killed by SIGKILL")
    s.arrive(1, "a", 5.0)
    assert s.step(5.0) == [Load("a", "restart")]
    s.load_done("a", 6.0, 1.0)
    assert s.instances["a"].restart_reason is None and s.instances["a"].loads == 2


def test_expected_wait_uses_measured_load_times() -> None:
    s = sched(spec("a", load_s=9.0))
    assert s.expected_wait("a", 0.0) == 9.0  # the estimate before any load
    ready(s, "a")
    assert s.expected_wait("a", 0.0) == 0.0
    s.lost("a", "gone")
    assert s.expected_wait("a", 0.0) == 1.0  # the measured load (1 s in ready())


def test_a_busy_cheap_victim_is_waited_for_rather_than_evicting_a_dear_idle_one() -> None:
    s = sched(spec("cheap"), spec("dear"), spec("new"), budget=2 * GB, max_overtake_s=30.0)
    ready(s, "cheap", at=0.0, load_s=1.0)
    ready(s, "dear", at=0.0, load_s=30.0)
    for t in range(1, 10):  # dear is in steady use (and slow to load) ...
        s.arrive(100 + t, "dear", float(t))
        s.step(float(t))
        s.release("dear", float(t))
    s.arrive(1, "cheap", 10.0)  # ... cheap has one long call in flight
    s.step(10.0)
    s.arrive(2, "new", 11.0)
    assert s.step(11.0) == []  # dear is idle, but losing it costs more: wait for cheap
    s.release("cheap", 20.0)
    (unload,) = s.step(20.0)
    assert isinstance(unload, Unload) and unload.instance == "cheap"


async def test_after_an_unload_the_load_waits_for_free_memory_to_recover() -> None:
    from localroute.residency.tickets import wait_for_memory

    readings = iter([1 * GB, 2 * GB, 5 * GB])  # the machine hands the memory back lazily
    ok, waited = await wait_for_memory(4 * GB, timeout=10.0, available=lambda: next(readings))
    assert ok and waited > 0  # it polled until the third reading covered the 4 GB load
    ok, waited = await wait_for_memory(4 * GB, timeout=0.3, available=lambda: 1 * GB)
    assert not ok and waited >= 0.3  # gave up after the timeout (the load then goes ahead)
