from dash_ray.settings import RestartPolicy
from dash_ray.supervision.policy import RestartTracker


def test_backoff_doubles_up_to_a_cap():
    tracker = RestartTracker(RestartPolicy(max_restarts=10, window_s=1000, backoff_s=0.5, max_backoff_s=3))
    delays = [tracker.on_failure(t).delay_s for t in range(6)]
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    assert tracker.total == 6


def test_gives_up_after_too_many_restarts_in_the_window():
    tracker = RestartTracker(RestartPolicy(max_restarts=3, window_s=60))
    assert [tracker.on_failure(t).action for t in (0, 1, 2)] == ["restart"] * 3
    decision = tracker.on_failure(3)
    assert decision.action == "give_up" and decision.restarts_in_window == 3


def test_old_restarts_leave_the_window():
    tracker = RestartTracker(RestartPolicy(max_restarts=2, window_s=10, backoff_s=1))
    tracker.on_failure(0)
    tracker.on_failure(1)
    decision = tracker.on_failure(20)
    assert decision.action == "restart" and decision.delay_s == 1
    assert tracker.total == 3


def test_reset_forgets_the_window_not_the_total():
    tracker = RestartTracker(RestartPolicy(max_restarts=1, window_s=60))
    tracker.on_failure(0)
    tracker.reset()
    assert tracker.on_failure(1).action == "restart" and tracker.total == 2


def test_a_pipeline_that_ran_is_never_given_up_its_back_off_capped():
    policy = RestartPolicy(max_restarts=3, window_s=60, backoff_s=0.5, max_backoff_s=15,
                           crash_loop_max_backoff_s=300)
    tracker = RestartTracker(policy)
    tracker.on_running(0)
    decisions = []
    t = 0.0
    for _ in range(12):  # seven SIGKILLs a minute, and more
        t += 1
        decision = tracker.on_failure(t)
        decisions.append(decision)
        t += decision.delay_s
        tracker.on_running(t)
    assert [d.action for d in decisions] == ["restart"] * 12
    assert [d.delay_s for d in decisions] == [0.5, 1, 2, 15, 30, 60, 120, 240, 300, 300, 300, 300]
    assert [d.crash_loop for d in decisions[:4]] == [False, False, False, True]
    assert tracker.total == 12 and "crash loop" in str(decisions[-1])


def test_running_healthy_for_the_window_ends_a_crash_loop():
    tracker = RestartTracker(RestartPolicy(max_restarts=1, window_s=60, backoff_s=1, max_backoff_s=10))
    tracker.on_running(0)
    assert tracker.on_failure(1).delay_s == 1
    tracker.on_running(2)
    assert tracker.on_failure(3).crash_loop
    tracker.on_running(13)
    assert tracker.on_failure(20).delay_s == 20  # still looping: it ran 7 s only
    tracker.on_running(40)
    decision = tracker.on_failure(100)  # ran 60 s: out of the loop
    assert decision.delay_s == 1 and not decision.crash_loop


def test_a_spec_that_never_ran_is_given_up_even_after_an_earlier_run_was_reset():
    tracker = RestartTracker(RestartPolicy(max_restarts=2, window_s=60))
    tracker.on_running(0)
    tracker.reset()  # redeployed or restarted by hand: it must run again to count as running
    assert not tracker.ran
    assert [tracker.on_failure(t).action for t in (1, 2, 3)] == ["restart", "restart", "give_up"]
