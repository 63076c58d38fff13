"""Provision: build VM → one task per fragment, in order → finalize (swap in as the base).

Fragments are data (clave/provision/*.sh), so this graph is built from the pipeline.
Every fragment task depends on the one before it: doit would otherwise order siblings
freely. A fragment is up to date when the current base was built with its digest.
"""

from __future__ import annotations

from clave.provision.build import ImageBuild
from clave.steps.apply_fragment import ApplyFragment
from clave.steps.finalize_image import FinalizeImage
from clave.steps.prepare_build_vm import PrepareBuildVm
from clave.tasks.graph import Task

LABEL = "Provisioning the base image..."
TARGET = "finalize_image"


def fragment_task_name(key: str) -> str:
    return f"step_{key}"


def provision_tasks(build: ImageBuild) -> list[Task]:
    prepare = Task(PrepareBuildVm.task_name(), PrepareBuildVm(build))
    tasks, previous = [prepare], prepare.name
    for fragment in build.pipeline.fragments:
        task = Task(fragment_task_name(fragment.key), ApplyFragment(build, fragment),
                    (prepare.name, previous) if previous != prepare.name else (prepare.name,))
        tasks.append(task)
        previous = task.name
    tasks.append(Task(FinalizeImage.task_name(), FinalizeImage(build), (previous,)))
    return tasks
