"""Driving runs: rounds of batch polling and real-time work until each run is done.

Owns `RunDriver` (`driver.py`: `step`, `wait`, `drive_realtime`, `resume`, `cancel`, the
budget warning, when the next round is due) and steering (`steering.py`: one round of
re-routing, escalation, the budget guard, finishing, cancelling and recovering a run's
claims). Every change of course is an event in the store with its reason. No SQL, no
printing, the injected clock.
"""
