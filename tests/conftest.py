from __future__ import annotations

from hypothesis import HealthCheck, settings

# Reference runs on large inputs take milliseconds each; no per-example deadline, and a
# modest example count keeps the default run fast on CI's 2 cores.
settings.register_profile(
    "npi", deadline=None, max_examples=25, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("npi")
