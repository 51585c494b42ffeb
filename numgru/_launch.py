"""The MPI launchers' environment: whether this process was started by mpiexec, srun and the
like, read from the variables they set, without importing mpi4py or initialising MPI. A leaf,
read by the data-parallel training, the CLI and the kernel precompiler."""

import os

# Environment variables that launchers set in every process they start: (name, launcher). A
# value that is a number is the world size.
LAUNCH_VARS = (
    ("OMPI_COMM_WORLD_SIZE", "Open MPI mpiexec"),
    ("PMI_SIZE", "MPICH / Intel MPI mpiexec (PMI)"),
    ("PMIX_RANK", "a PMIx launcher (Open MPI 5, srun --mpi=pmix)"),
    ("MV2_COMM_WORLD_SIZE", "MVAPICH mpiexec"),
    ("SLURM_STEP_NUM_TASKS", "Slurm srun"),
)


def launch_environment():
    """(variable, launcher, size or None) of the first launcher variable set in this process's
    environment, or None when nothing says this process was started by an MPI launcher. Reads the
    environment only (mpi4py is not imported)."""
    for name, launcher in LAUNCH_VARS:
        value = os.environ.get(name)
        if value is not None and value.strip() != "":
            size = int(value) if value.strip().isdigit() and not name.endswith("RANK") else None
            return name, launcher, size
    return None
