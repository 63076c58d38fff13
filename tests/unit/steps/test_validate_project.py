"""ValidateProject: clave starts only at the root of a Laravel project."""

from __future__ import annotations

import pytest

from clave.errors import ClaveError
from clave.steps.validate_project import ValidateProject


def test_a_project_with_an_artisan_file_passes_and_is_done(world):
    ctx = world.ctx()
    ValidateProject().run(ctx)
    assert ValidateProject().done(ctx)


def test_a_directory_without_artisan_is_refused_naming_the_directory_and_the_fix(world):
    (world.project / "artisan").unlink()
    before = sorted(p.name for p in world.project.iterdir())
    with pytest.raises(ClaveError) as raised:
        ValidateProject().run(world.ctx())
    message = str(raised.value)
    assert str(world.project) in message and "not a Laravel project" in message
    assert "project's root" in message
    assert raised.value.exit_code == 1
    assert sorted(p.name for p in world.project.iterdir()) == before


def test_an_artisan_directory_is_not_an_artisan_file(world):
    (world.project / "artisan").unlink()
    (world.project / "artisan").mkdir()
    ctx = world.ctx()
    with pytest.raises(ClaveError, match="not a Laravel project"):
        ValidateProject().run(ctx)
    assert not ValidateProject().done(ctx)
