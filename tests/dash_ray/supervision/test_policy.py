from dash_ray.supervision.policy import RestartPolicy, RestartTracker


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
