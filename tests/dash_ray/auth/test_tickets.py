"""Live tickets: one socket's worth of a token, for a short time, once."""

from __future__ import annotations

from dash_ray.auth.tickets import LiveTickets

TOKEN = "dash_0123456789ab_" + "s" * 43


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_ticket_gives_its_token_back_once() -> None:
    tickets = LiveTickets()
    ticket = tickets.issue(TOKEN)
    assert ticket.startswith("dlt_") and TOKEN not in ticket and "s" * 8 not in ticket
    assert tickets.issue(TOKEN) != ticket
    assert tickets.redeem(ticket) == TOKEN
    assert tickets.redeem(ticket) is None
    assert tickets.redeem("dlt_made-up") is None


def test_a_ticket_expires() -> None:
    clock = Clock()
    tickets = LiveTickets(ttl_s=30, clock=clock)
    early, late = tickets.issue(TOKEN), None
    clock.now += 20
    late = tickets.issue(TOKEN)
    clock.now += 10
    assert tickets.redeem(early) is None  # 30 s old
    assert tickets.redeem(late) == TOKEN  # 10 s old
    assert len(tickets) == 0


def test_at_most_max_tickets_wait_and_the_oldest_go_first() -> None:
    tickets = LiveTickets(max_tickets=3)
    made = [tickets.issue(f"token-{i}") for i in range(5)]
    assert len(tickets) == 3
    assert [tickets.redeem(t) for t in made] == [None, None, "token-2", "token-3", "token-4"]
