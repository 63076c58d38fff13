"""Step tests run in a `world` (tests/unit/steps/world.py): real git and SQLite, fake tart/herd."""

from tests.unit.steps.world import base_template, world_fixture  # noqa: F401  (fixtures)
