"""Mesh, logical-axis rules and the Partitioner that turns them into `jax.jit` shardings (t5x-style).

Every parameter and activation of the model carries logical axis names (`embed`, `q_heads`,
`activation_batch`, ...). The rules table in `config.partitioning.rules` maps each logical name to
mesh axes of a `("data", "fsdp", "tensor")` mesh; it is the single source of sharding truth:
parameter, optimizer-state and batch shardings are all derived from it here.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Any, Callable, Iterator, Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from t5x_like.errors import UserError

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")  # the batch dimension is split over both data-parallel axes
LogicalRules = tuple[tuple[str, Any], ...]


class PartitioningError(UserError, ValueError):
    """A mesh or rules table that cannot shard this model/batch (raised before compiling)."""


def resolve_mesh_shape(shape: Sequence[int], num_devices: int) -> tuple[int, ...]:
    """Replaces one -1 by the number of devices left; checks the product equals `num_devices`."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != len(MESH_AXES):
        raise PartitioningError(f"partitioning.mesh_shape={shape} needs {len(MESH_AXES)} sizes {MESH_AXES}")
    if shape.count(-1) > 1 or any(s == 0 or s < -1 for s in shape):
        raise PartitioningError(f"partitioning.mesh_shape={shape}: sizes must be positive, at most one -1")
    known = math.prod(s for s in shape if s != -1)
    if -1 in shape:
        if num_devices % known:
            raise PartitioningError(
                f"partitioning.mesh_shape={shape}: {num_devices} devices are not divisible by {known}")
        shape = tuple(num_devices // known if s == -1 else s for s in shape)
    if math.prod(shape) != num_devices:
        raise PartitioningError(
            f"partitioning.mesh_shape={shape} has {math.prod(shape)} slots but there are {num_devices} "
            f"devices; make the product equal the device count (use -1 for 'the rest')")
    return shape


def create_mesh(shape: Sequence[int], devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A ("data", "fsdp", "tensor") mesh with `AxisType.Auto` (Linen's logical constraints need Auto).

    Device order comes from `mesh_utils.create_device_mesh` (TPU-topology aware: ICI-near devices
    share the inner axes); where it cannot place the shape, devices are taken in id order.
    """
    devices = list(jax.devices() if devices is None else devices)
    shape = resolve_mesh_shape(shape, len(devices))
    try:
        grid = mesh_utils.create_device_mesh(shape, devices=devices)
    except (ValueError, NotImplementedError, AssertionError):
        grid = np.asarray(sorted(devices, key=lambda d: d.id), dtype=object).reshape(shape)
    return Mesh(grid, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES))


def parse_mesh_shape(text: str, what: str = "mesh_shape") -> tuple[int, int, int]:
    """'2,2,2' -> (2, 2, 2); a malformed value is one clear error naming `what` (the flag or argument)."""
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3:
        raise PartitioningError(f"{what}={text!r}: give three integers DATA,FSDP,TENSOR (e.g. 1,-1,1)")
    return shape  # type: ignore[return-value]


def rules_from_config(rules: Sequence[Sequence[Any]]) -> LogicalRules:
    """The config's [[logical, mesh axes], ...] list as Flax's rules tuple (lists -> tuples)."""
    out = []
    for entry in rules:
        if len(entry) != 2:
            raise PartitioningError(f"partitioning.rules entry {entry!r} must be (logical name, mesh axes)")
        logical, axes = entry
        if isinstance(axes, (list, tuple)):
            axes = tuple(axes)
            unknown = [a for a in axes if a not in MESH_AXES]
        else:
            unknown = [] if axes is None or axes in MESH_AXES else [axes]
        if unknown:
            raise PartitioningError(f"partitioning.rules[{logical!r}] names unknown mesh axes {unknown}; "
                                    f"mesh axes are {MESH_AXES}")
        out.append((str(logical), axes))
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class Partitioner:
    """Owns the mesh and the logical rules; derives shardings and jits functions with them."""

    mesh: Mesh
    rules: LogicalRules

    @classmethod
    def from_config(cls, partitioning_cfg: Any, devices: Sequence[jax.Device] | None = None) -> "Partitioner":
        """From the `partitioning` config section (mesh_shape, rules)."""
        return cls(create_mesh(partitioning_cfg.mesh_shape, devices), rules_from_config(partitioning_cfg.rules))

    @classmethod
    def single_device(cls, rules: LogicalRules = ()) -> "Partitioner":
        """A (1, 1, 1) mesh on this process's first device (direct use of a Scorer / Generator)."""
        return cls(create_mesh((1, 1, 1), jax.local_devices()[:1]), tuple(rules))

    @contextlib.contextmanager
    def context(self) -> Iterator[None]:
        """Mesh + rules active, so the model's `with_logical_constraint` calls take effect when traced."""
        with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
            yield

    def axis_size(self, *axes: str) -> int:
        return math.prod(self.mesh.shape[a] for a in axes)

    @property
    def data_parallel_size(self) -> int:
        return self.axis_size(*BATCH_AXES)

    def mesh_spec(self, logical: PartitionSpec | Sequence[str | None]) -> PartitionSpec:
        """Logical axis names -> a mesh PartitionSpec under this rules table."""
        return nn.logical_to_mesh_axes(tuple(logical), self.rules)

    def sharding(self, logical: PartitionSpec | Sequence[str | None]) -> NamedSharding:
        return NamedSharding(self.mesh, self.mesh_spec(logical))

    def logical_specs(self, boxed_tree: Any) -> Any:
        """Logical PartitionSpecs of a tree boxed with nn.Partitioned (abstract or concrete)."""
        return nn.get_partition_spec(boxed_tree)

    def shardings_of(self, boxed_tree: Any) -> Any:
        """NamedShardings for every leaf of a boxed tree; unboxed leaves are replicated."""
        return self.shardings_for_specs(self.logical_specs(boxed_tree))

    def shardings_for_specs(self, logical_specs: Any) -> Any:
        """NamedShardings for a tree of logical PartitionSpecs (e.g. an optimizer state's)."""
        return jax.tree.map(self.sharding, logical_specs, is_leaf=lambda x: isinstance(x, PartitionSpec))

    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec())

    def batch_sharding(self, ndim: int = 2) -> NamedSharding:
        """Rows over ("data", "fsdp"), everything else replicated."""
        return NamedSharding(self.mesh, PartitionSpec(BATCH_AXES, *([None] * (ndim - 1))))

    def check_divisible(self, abstract: Any, shardings: Any, what: str) -> None:
        """Raises one error listing every array whose dimension the mesh cannot split evenly."""
        problems = []
        flat_a = jax.tree_util.tree_flatten_with_path(abstract)[0]
        flat_s = jax.tree.leaves(shardings, is_leaf=lambda x: isinstance(x, NamedSharding))
        for (path, leaf), sharding in zip(flat_a, flat_s):
            for dim, axes in zip(leaf.shape, sharding.spec):
                if axes is None:
                    continue
                n = self.axis_size(*((axes,) if isinstance(axes, str) else axes))
                if dim % n:
                    problems.append(f"{jax.tree_util.keystr(path)} {leaf.shape} dim {dim} over {axes} ({n})")
        if problems:
            raise PartitioningError(
                f"mesh {dict(self.mesh.shape)} cannot evenly shard {what}: " + "; ".join(problems[:8])
                + (f" (+{len(problems) - 8} more)" if len(problems) > 8 else "")
                + ". Change partitioning.mesh_shape or partitioning.rules")

    def check_model(self, num_heads: int, num_kv_heads: int) -> None:
        """Attention heads must split whole over whatever mesh axes shard the head dimension."""
        for logical, heads in (("q_heads", num_heads), ("kv_heads", num_kv_heads)):
            axes = self.mesh_spec((logical,))[0]
            if axes is None:
                continue
            n = self.axis_size(*((axes,) if isinstance(axes, str) else axes))
            if heads % n:
                raise PartitioningError(
                    f"{logical}: {heads} heads cannot be split over mesh axes {axes} of size {n}; "
                    f"choose partitioning.mesh_shape with {axes} dividing {heads}")

    def describe(self) -> str:
        """The mesh in one log line: axis sizes, devices and processes."""
        return (f"mesh data={self.mesh.shape['data']} fsdp={self.mesh.shape['fsdp']} "
                f"tensor={self.mesh.shape['tensor']} over {self.mesh.size} {jax.devices()[0].platform} device(s), "
                f"{jax.process_count()} process(es)")

    def round_rows(self, rows: int) -> int:
        """`rows` rounded up to a multiple of the data-parallel size (batch rows split evenly)."""
        n = self.data_parallel_size
        return -(-rows // n) * n

    def place(self, tree: Any, shardings: Any) -> Any:
        """Every leaf on its sharding: jax arrays already there are kept, others are resharded, host
        arrays are sliced per device (each process builds only its own shards; multi-host safe)."""
        return jax.tree.map(self.place_array, tree, shardings)

    @staticmethod
    def place_array(x: Any, sharding: NamedSharding) -> jax.Array:
        """One leaf onto `sharding` (see `place`); an abstract leaf (ShapeDtypeStruct) gets the sharding, for
        compile-only use (memory analysis of the real programs without allocating weights)."""
        if isinstance(x, jax.ShapeDtypeStruct):
            return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)
        if isinstance(x, jax.Array):
            return x if x.sharding == sharding else jax.device_put(x, sharding)
        host = np.asarray(x)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    def check_batch(self, batch_size: int, microbatches: int = 1) -> None:
        """Each microbatch (batch_size / microbatches rows) must split evenly over data x fsdp."""
        if batch_size % microbatches or (batch_size // microbatches) % self.data_parallel_size:
            raise PartitioningError(
                f"train.batch_size={batch_size} (in {microbatches} microbatches) is not divisible by the "
                f"data-parallel size {self.data_parallel_size} (mesh data x fsdp) per microbatch; change "
                f"train.batch_size, train.microbatches or partitioning.mesh_shape")

    def jit(self, fn: Callable, *, in_shardings: Any, out_shardings: Any,
            donate_argnums: Sequence[int] = (), static_argnums: Sequence[int] = ()) -> Callable:
        """`jax.jit` with explicit shardings, tracing under this mesh and rules table."""
        jitted = jax.jit(fn, in_shardings=in_shardings, out_shardings=out_shardings,
                         donate_argnums=tuple(donate_argnums), static_argnums=tuple(static_argnums))
        return _InContext(jitted, self)

    def shard_host_batch(self, local: dict[str, np.ndarray], global_rows: int) -> dict[str, jax.Array]:
        """Per-process rows -> global arrays sharded over the batch axes (multi-host data loading)."""
        out = {}
        for name, array in local.items():
            sharding = self.batch_sharding(array.ndim)
            out[name] = jax.make_array_from_process_local_data(
                sharding, array, (global_rows,) + array.shape[1:])
        return out

    def local_row_range(self, global_rows: int) -> tuple[int, int]:
        """The [start, stop) rows of a global batch this process must load."""
        sharding = self.batch_sharding(2)
        rows = set()
        for device, index in sharding.addressable_devices_indices_map((global_rows, 1)).items():
            rows.update(range(*index[0].indices(global_rows)))
        start, stop = min(rows), max(rows) + 1
        if stop - start != len(rows):
            raise PartitioningError("this process's batch rows are not contiguous; use a mesh whose "
                                    "batch axes follow process order")
        return start, stop


class _InContext:
    """A jitted function that lowers/calls inside the partitioner's mesh + rules context."""

    def __init__(self, jitted: Callable, partitioner: Partitioner):
        self._jitted, self._partitioner = jitted, partitioner

    def __call__(self, *args: Any) -> Any:
        with self._partitioner.context():
            return self._jitted(*args)

    def lower(self, *args: Any) -> Any:
        with self._partitioner.context():
            return self._jitted.lower(*args)


def initialize_distributed(partitioning_cfg: Any) -> None:
    """`jax.distributed.initialize` for multi-process runs; a no-op for single-process ones.

    An explicit `coordinator_address` (localhost tests, GPU clusters) is passed through; with
    `multi_host=True` and no address, JAX auto-detects the cluster (TPU VMs, SLURM, GKE).
    Idempotent: run_experiment initialises once, before its stages (the trainer calls it again).
    """
    if jax.distributed.is_initialized():
        return
    if partitioning_cfg.coordinator_address:
        jax.distributed.initialize(partitioning_cfg.coordinator_address,
                                   partitioning_cfg.num_processes, partitioning_cfg.process_id)
    elif partitioning_cfg.multi_host:
        jax.distributed.initialize()


def shutdown_distributed() -> None:
    """Leaves a multi-process run together: every process waits for the others, then disconnects, so no
    process exits while another still talks to the coordinator (a no-op for single-process runs)."""
    if jax.distributed.is_initialized():
        jax.distributed.shutdown()


def inference_partitioner(mesh_shape: Sequence[int] | None, rules: LogicalRules) -> Partitioner:
    """The mesh inference runs on: `mesh_shape` over all devices when given; else every local device on
    the data axis on GPU/TPU, one device on CPU (XLA's fake host devices share the same cores)."""
    if mesh_shape:
        return Partitioner(create_mesh(mesh_shape), rules)
    if jax.default_backend() == "cpu":
        return Partitioner(create_mesh((1, 1, 1), jax.local_devices()[:1]), rules)
    return Partitioner(create_mesh((-1, 1, 1), jax.local_devices()), rules)

