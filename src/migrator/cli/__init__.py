"""The ``migrator`` command. Every command is a thin shell over the public API; each module
of this package holds the commands of one stage.

Exit codes: 0 success; 1 the answer is "no" (an invalid layout) or the device failed;
2 bad usage (unknown GPU, malformed layout, bad option), as click does.
"""

from __future__ import annotations

import click

from .. import __version__
from . import actuation, cluster, evaluation, geometry, migparted, planning

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="migrator")
@click.option("--files-anywhere", is_flag=True,
              help="Let scenario files name trace and model files outside their own folder "
                   "(absolute paths, ..); by default such a reference is an error.")
def main(files_anywhere: bool) -> None:
    """Decide and apply NVIDIA MIG layouts for GPUs shared by several tenants.

    Layouts are written as comma-separated placements PROFILE@START sorted by start,
    e.g. "1g.10gb@0,1g.10gb@1,2g.20gb@2,3g.40gb@4".
    """


for _command in (
    geometry.gpus, geometry.geometry, geometry.transition,
    planning.plan, planning.demo,
    evaluation.simulate,
    actuation.run, actuation.status, actuation.recover,
    migparted.mig_parted,
    cluster.cluster_command, cluster.agent_command,
):
    main.add_command(_command)
