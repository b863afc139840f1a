"""The one training loop of the torch recommenders: binary cross-entropy on sampled pairs.

Every epoch sees every train positive (label 1) and a set of negatives (label 0):

- ``negatives_per_positive = 0`` (the study's set-up): the published ``negatives`` matrix,
  all of it, every epoch;
- ``negatives_per_positive = n > 0``: ``n`` fresh negatives per positive, drawn uniformly
  from the candidate tracks (tracks with a train interaction) for the positive's user,
  re-drawn where they hit one of that user's train positives;
- ``positives_only = True``: no negative at all, only the train positives (label 1): the
  study's figure of MBCF without negative samples (``jamrec study``, experiment
  ``negatives``). Nothing then tells a liked track from any other: the scores drift
  towards popularity and worse.

Pairs are shuffled every epoch and fed to Adam in mini-batches; ``TrainData.on_batch``
(the study's step curves) sees every optimiser step and may end training there. Every random choice
comes from generators seeded by ``(seed, epoch)``: the same data, config and seed give
bit-identical weights on CPU (CUDA's embedding backward adds with atomics, so GPU runs are
only close).
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING

import numba
import numpy as np
import scipy.sparse as sp
import torch
from pydantic import Field
from torch import nn

from jamrec.errors import JamrecError
from jamrec.models.base import TrainData
from jamrec.models.early_stopping import EarlyStopping, EarlyStoppingConfig
from jamrec.models.products import in_parallel, one_blas_thread
from jamrec.models.torch.kernels import (
    dense_adam,
    dot_bce_grads,
    dot_bce_step,
    hybrid_embedding_grads,
    hybrid_head,
    hybrid_inputs,
    in_rows,
    sparse_adam_rows,
)
from jamrec.models.torch.modules import DotModule, HybridModule

if TYPE_CHECKING:
    from torch.optim.optimizer import ParamsT

    from jamrec.models.base import Recommender

MAX_REDRAWS = 20  # rounds of re-drawing negatives that hit a positive; what is left is dropped
_SHUFFLE, _NEGATIVES = 0, 1  # generator streams of one epoch


class TrainConfig(EarlyStoppingConfig):
    """Settings of the BCE trainer, shared by every torch recommender, with early stopping
    (:mod:`jamrec.models.early_stopping`): ``epochs`` is the maximum."""

    epochs: int = Field(
        20,
        ge=1,
        description="The most epochs (MBCF's validation NDCG@10 peaks there on the generated "
        "small dump).",
    )
    batch_size: int = Field(4096, ge=1, description="The study's setting.")
    lr: float = Field(1e-3, gt=0, description="The study's setting (Adam's usual default).")
    weight_decay: float = Field(0.0, ge=0, description="The study used none.")
    negatives_per_positive: int = Field(
        0, ge=0, description="0 = the published negatives (the study's set-up); n = n fresh ones."
    )
    positives_only: bool = Field(
        False,
        description="Train on the positives alone, no negative (the study's first figure: "
        "it collapses, which is the point); the published or fresh negatives otherwise.",
    )
    probe_every: int = Field(
        0,
        ge=0,
        description="About how many training pairs between validation probes: an epoch "
        "longer than that is probed that many times, evenly, at batch boundaries, and early "
        "stopping's patience counts probes (0 = once an epoch, at its end).",
    )
    optimizer: str = Field(
        "lazy_adam",
        pattern="^(lazy_adam|adam)$",
        description="Lazy Adam updates only the embedding rows a batch touched: dense Adam "
        "moves all 50M parameters per step at TIMJ scale (15k samples/s here, not 500k).",
    )


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _update_pool() -> ThreadPoolExecutor:
    """One worker thread for the second table's update of :meth:`LazyAdam.dot_step` (the
    compiled kernels release the GIL), shared by every training in the process."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(1, thread_name_prefix="jamrec-adam")
        return _pool


class LazyAdam(torch.optim.Optimizer):
    """Adam that, for sparse gradients, updates only the rows the batch touched.

    The moments of rows a batch did not touch are left as they are (TensorFlow's
    LazyAdam); dense gradients (the hybrid's layers) get ordinary Adam. Bias correction
    uses the optimizer's step count. torch's own ``SparseAdam`` does the same but spends
    ~50 ms a step coalescing at TIMJ scale; this keeps a step at a few milliseconds: a
    step of a sparse parameter is memory-bound on gathering and scattering random rows, so
    both moments of a row sit side by side (``moments``, ``(n, 2, ...)``: one gather and
    one scatter for both) and the rows are updated by select-and-copy, not ``index_add_``
    (4x slower into a large table on CPU). On the CPU a table's update runs fused in one
    compiled pass (:func:`.kernels.sparse_adam_rows`: the same rule, ~10x fewer memory
    passes); the torch path is kept for other devices and as the kernel's reference.
    Deterministic on CPU.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    # Takes no closure (torch's optional loss re-evaluation): the trainer calls step()
    # after backward, so the override is narrower than Optimizer.step's overloads.
    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        """Adam on every parameter with a gradient. The compiled updates of the sparse
        tables (each touches its own memory only) run last, at once on two threads when
        torch may use two (the two-tower's user and track tables): the same bits as one
        after the other."""
        tables: list[Callable[[], object]] = []
        for group in self.param_groups:
            lr, (b1, b2), eps = group["lr"], group["betas"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state, bc1, bc2 = self._advance(p, p.grad.is_sparse, b1, b2)
                if p.grad.is_sparse and self._compiled(p):
                    update = (  # the batch's rows, repeats summed by the kernel
                        p.detach().numpy(),
                        state["moments"].numpy(),
                        state["slots"],
                        p.grad._indices()[0].contiguous().numpy(),
                        p.grad._values().contiguous().numpy(),
                        lr, b1, b2, eps, bc1, bc2,
                    )  # fmt: skip
                    tables.append(partial(sparse_adam_rows, *update))
                elif p.grad.is_sparse:
                    self._sparse_step(p, p.grad, state["moments"], lr, b1, b2, eps, bc1, bc2)
                else:
                    self._dense_step(p, p.grad, state, lr, b1, b2, eps, bc1, bc2)
        lanes = in_parallel if torch.get_num_threads() >= 2 else _one_after_the_other
        lanes(*tables)

    @staticmethod
    def _dense_step(
        p: torch.Tensor,
        grad: torch.Tensor,
        state: dict,
        lr: float,
        b1: float,
        b2: float,
        eps: float,
        bc1: float,
        bc2: float,
    ) -> None:
        """Adam on a dense parameter (the hybrid's and two-tower's layers)."""
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.mul_(b1).add_(grad, alpha=1 - b1)
        v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        p.sub_(lr * (m / bc1) / ((v / bc2).sqrt().add_(eps)))

    def _state(self, p: torch.Tensor, sparse: bool) -> dict:
        """``p``'s optimiser state, created at its first step: the step count and the
        moments (sparse: both in one ``(n, 2, ...)`` table, with the compiled kernel's
        scratch row map)."""
        state = self.state[p]
        if not state:
            state["step"] = 0
            if sparse:
                state["moments"] = p.new_zeros((p.shape[0], 2, *p.shape[1:]))
                state["slots"] = np.full(p.shape[0], -1, np.int32)
            else:
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = torch.zeros_like(p)
        return state

    @torch.no_grad()
    def dot_step(
        self,
        user_weight: torch.Tensor,
        track_weight: torch.Tensor,
        users: torch.Tensor,
        items: torch.Tensor,
        labels: torch.Tensor,
    ) -> float:
        """One whole MBCF step, fused (:func:`.kernels.dot_bce_step`): the same update as
        the forward pass, mean BCE, backward and :meth:`step` on the two embedding tables
        (CPU, float32; see :meth:`_compiled`). Returns the batch's mean loss."""
        group = self.param_groups[0]
        lr, (b1, b2), eps = group["lr"], group["betas"], group["eps"]
        user_state = self._state(user_weight, sparse=True)
        track_state = self._state(track_weight, sparse=True)
        user_state["step"] += 1
        track_state["step"] += 1
        step = user_state["step"]
        bc1, bc2 = 1 - b1**step, 1 - b2**step
        tables = (
            user_weight.detach().numpy(),
            user_state["moments"].numpy(),
            user_state["slots"],
            track_weight.detach().numpy(),
            track_state["moments"].numpy(),
            track_state["slots"],
        )
        pairs = (users.contiguous().numpy(), items.contiguous().numpy())
        labels_ = labels.contiguous().numpy()
        if torch.get_num_threads() < 2:
            return dot_bce_step(*tables, *pairs, labels_, lr, b1, b2, eps, bc1, bc2)
        # Two threads: the gradients, then each table's update on its own core. The
        # tables are disjoint memory and each update is the same single pass, so the
        # result equals dot_bce_step's, bit for bit.
        user_table, user_moments, user_slots, track_table, track_moments, track_slots = tables
        grads = np.empty((2, len(labels_), user_table.shape[1]), np.float32)
        loss = dot_bce_grads(user_table, track_table, *pairs, labels_, grads[0], grads[1])
        adam = (lr, b1, b2, eps, bc1, bc2)
        other = _update_pool().submit(
            sparse_adam_rows, track_table, track_moments, track_slots, pairs[1], grads[1], *adam
        )
        sparse_adam_rows(user_table, user_moments, user_slots, pairs[0], grads[0], *adam)
        other.result()
        return loss

    @torch.no_grad()
    def hybrid_step(
        self,
        module: HybridModule,
        users: torch.Tensor,
        items: torch.Tensor,
        labels: torch.Tensor,
    ) -> float:
        """One whole step of the hybrid network (:class:`.modules.HybridModule`) on the
        CPU: the same update as its forward pass, mean BCE, autograd's backward and
        :meth:`step`, without autograd. Returns the batch's mean loss.

        The batch is cut into two halves (always two, so the sums are the same whatever
        runs them), each worked through on its own thread: its rows gathered and
        concatenated in one compiled pass (:func:`.kernels.hybrid_inputs`), the first
        layer's product (single-threaded BLAS), the head's forward and backward in one
        pass (:func:`.kernels.hybrid_head`), the input gradient's product and the
        embedding rows' gradients. Then the two tables' lazy updates run on two threads,
        each beside one half of the first layer's weight gradient, and Adam moves the
        layers. On one thread (``torch.get_num_threads() == 1``, or a BLAS that spreads
        its own products: :func:`train` holds it on one, :func:`.products.one_blas_thread`)
        the same parts run one after the other, with the same bits.
        """
        group = self.param_groups[0]
        lr, (b1, b2), eps = group["lr"], group["betas"], group["eps"]
        user_weight, track_weight = module.users.weight, module.tracks.weight
        w1, bias1 = module.layer1.weight, module.layer1.bias
        w2, bias2 = module.layer2.weight, module.layer2.bias
        dim, (hidden, width) = module.dim, w1.shape
        n_pairs = len(labels)
        users_, items_ = users.contiguous().numpy(), items.contiguous().numpy()
        labels_ = labels.contiguous().numpy()
        x, z, dx, grads = self._hybrid_buffers(n_pairs, width, hidden, dim)
        coef = np.empty(n_pairs, np.float32)
        head_grads = np.zeros((2, hidden + 1), np.float32)
        losses = [0.0, 0.0]
        tables = (user_weight.detach().numpy(), track_weight.detach().numpy())
        features, w1_, b1_ = module.features.numpy(), w1.detach().numpy(), bias1.detach().numpy()
        w2_, b2_ = w2.detach()[0].numpy(), float(bias2[0])
        half = (n_pairs + 1) // 2
        inverse_n = 1.0 / max(n_pairs, 1)

        def forward_backward(lane: int) -> None:
            rows = slice(lane * half, min(n_pairs, (lane + 1) * half))
            if rows.start >= rows.stop:
                return
            hybrid_inputs(*tables, features, users_[rows], items_[rows], x[rows])
            np.matmul(x[rows], w1_.T, out=z[rows])
            z[rows] += b1_
            losses[lane] = hybrid_head(
                z[rows], x[rows], dim, w2_, b2_, labels_[rows], module.dot, inverse_n,
                head_grads[lane], coef[rows],
            )  # fmt: skip
            np.matmul(z[rows], w1_[:, : 2 * dim], out=dx[rows])
            hybrid_embedding_grads(
                dx[rows], x[rows], coef[rows], module.dot, grads[0, rows], grads[1, rows]
            )

        w1_grad = np.empty((hidden, width), np.float32)
        split = hidden // 2
        steps = {p: self._advance(p, p is user_weight or p is track_weight, b1, b2)
                 for p in (user_weight, track_weight, w1, bias1, w2, bias2)}  # fmt: skip

        def dense(p: torch.Tensor, grad: np.ndarray, rows: slice = slice(None)) -> None:
            state, bc1, bc2 = steps[p]
            dense_adam(
                p.detach()[rows].view(-1).numpy(),  # views: updated in place
                state["exp_avg"][rows].view(-1).numpy(),
                state["exp_avg_sq"][rows].view(-1).numpy(),
                grad.reshape(-1), lr, b1, b2, eps, bc1, bc2,
            )  # fmt: skip

        def update(lane: int) -> None:
            # this lane's half of the first layer's units, then its table
            units = slice(0, split) if lane == 0 else slice(split, hidden)
            np.matmul(z[:, units].T, x, out=w1_grad[units])
            dense(w1, w1_grad[units], units)
            if lane == 1:
                head_grad = head_grads[0] + head_grads[1]
                dense(bias1, z.sum(axis=0))
                dense(w2, head_grad[:hidden])
                dense(bias2, head_grad[hidden:])
            weight, index = (user_weight, users_) if lane == 0 else (track_weight, items_)
            state, bc1, bc2 = steps[weight]
            sparse_adam_rows(
                tables[lane], state["moments"].numpy(), state["slots"], index, grads[lane],
                lr, b1, b2, eps, bc1, bc2,
            )  # fmt: skip

        lanes = in_parallel if torch.get_num_threads() >= 2 else _one_after_the_other
        lanes(lambda: forward_backward(0), lambda: forward_backward(1))
        lanes(lambda: update(0), lambda: update(1))
        return (losses[0] + losses[1]) * inverse_n

    def _hybrid_buffers(
        self, n_pairs: int, width: int, hidden: int, dim: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The hybrid step's scratch arrays for a batch of ``n_pairs``, kept between
        steps (fresh ones each step cost page faults): the inputs ``x`` ``(n, width)``,
        the pre-activations and their gradient ``z`` ``(n, hidden)``, the inputs'
        embedding gradient ``dx`` ``(n, 2 dim)`` and each pair's two embedding rows'
        gradients ``(2, n, dim)``."""
        key = (n_pairs, width, hidden, dim)
        if getattr(self, "_buffers_key", None) != key:
            self._buffers_key = key
            self._buffers = (
                np.empty((n_pairs, width), np.float32),
                np.empty((n_pairs, hidden), np.float32),
                np.empty((n_pairs, 2 * dim), np.float32),
                np.empty((2, n_pairs, dim), np.float32),
            )
        return self._buffers

    def _advance(
        self, p: torch.Tensor, sparse: bool, b1: float, b2: float
    ) -> tuple[dict, float, float]:
        """``p``'s state with its step counted, and that step's bias corrections."""
        state = self._state(p, sparse)
        state["step"] += 1
        return state, 1 - b1 ** state["step"], 1 - b2 ** state["step"]

    @staticmethod
    def _compiled(p: torch.Tensor) -> bool:
        """Whether ``p``'s sparse update runs in the compiled kernel (:mod:`.kernels`): a
        contiguous float32 table on the CPU; the torch path below otherwise (CUDA)."""
        on_cpu = p.device.type == "cpu" and p.dtype == torch.float32
        return on_cpu and p.dim() == 2 and p.is_contiguous()

    @staticmethod
    def _sparse_step(
        p: torch.Tensor,
        sparse_grad: torch.Tensor,
        moments: torch.Tensor,
        lr: float,
        b1: float,
        b2: float,
        eps: float,
        bc1: float,
        bc2: float,
    ) -> None:
        # the batch's gradient summed per touched row (rows sorted, unique)
        index, values = sparse_grad._indices()[0], sparse_grad._values()
        rows, at = torch.unique(index, return_inverse=True)
        grad = values.new_zeros((len(rows), *p.shape[1:])).index_add_(0, at, values)
        both = moments.index_select(0, rows)
        m_rows, v_rows = both[:, 0], both[:, 1]
        m_rows.lerp_(grad, 1 - b1)
        v_rows.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        moments.index_copy_(0, rows, both)
        denom = v_rows.sqrt_().div_(math.sqrt(bc2)).add_(eps)
        step = m_rows.div_(denom).mul_(lr / bc1)
        p.index_copy_(0, rows, p.index_select(0, rows).sub_(step))


def _one_after_the_other(*works: Callable[[], object]) -> None:
    for work in works:
        work()


def resolve_device(name: str) -> torch.device:
    """The torch device for a runtime's ``device``; a clear error when CUDA is missing."""
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise JamrecError(
            f"device {name!r} was asked for, but torch {torch.__version__} sees no CUDA device; "
            "use device='cpu'"
        )
    return torch.device(name)


def generator(seed: int, epoch: int, stream: int) -> torch.Generator:
    """A CPU generator for one (seed, epoch, purpose): epochs are reproducible one by one."""
    state = np.random.SeedSequence([seed, epoch, stream]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 31 | int(state[1]) >> 1)


def _pairs(matrix: sp.csr_matrix) -> tuple[torch.Tensor, torch.Tensor]:
    coo = matrix.tocoo()
    return torch.from_numpy(coo.row.astype(np.int64)), torch.from_numpy(coo.col.astype(np.int64))


def sample_negatives(
    train: sp.csr_matrix, candidates: np.ndarray, users: torch.Tensor, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """One uniform candidate track per entry of ``users``, never one of its train positives.

    ``train`` is ``(n_users, n_tracks)``, ``candidates`` a ``(n_tracks,)`` bool mask and
    ``users`` an ``(N,)`` int64 tensor of user indexes. Draws that hit a positive are
    re-drawn (at most ``MAX_REDRAWS`` rounds); the few still hitting one after that (users
    who like almost every candidate) are dropped. Returns ``(users, items)``, aligned.
    """
    pool = torch.from_numpy(np.flatnonzero(candidates).astype(np.int64))
    if len(pool) == 0 or len(users) == 0:
        return users[:0], users[:0]
    positives = sp.csr_matrix(train)
    if not positives.has_sorted_indices:
        positives = positives.sorted_indices()
    indptr, indices = positives.indptr.astype(np.int64), positives.indices.astype(np.int64)

    def positive(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        out = np.empty(len(rows), np.bool_)
        in_rows(indptr, indices, rows.numpy(), cols.numpy(), out)
        return torch.from_numpy(out)

    items = pool[torch.randint(len(pool), (len(users),), generator=gen)]
    hit = positive(users, items)
    for _ in range(MAX_REDRAWS):
        redo = hit.nonzero().squeeze(1)
        if len(redo) == 0:
            break
        items[redo] = pool[torch.randint(len(pool), (len(redo),), generator=gen)]
        hit[redo] = positive(users[redo], items[redo])
    keep = ~hit
    return users[keep], items[keep]


def epoch_samples(
    data: TrainData,
    negatives_per_positive: int,
    seed: int,
    epoch: int,
    positives_only: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One epoch's shuffled training pairs: ``(users, items, labels)``, each ``(N,)``.

    ``users``/``items`` are int64 indexes, ``labels`` float32 (1 = train positive,
    0 = negative); see the module docstring for where the negatives come from.
    ``positives_only`` leaves every negative out (every label 1).
    """
    pos_users, pos_items = _pairs(data.train)
    if positives_only:
        neg_users, neg_items = pos_users[:0], pos_items[:0]
    elif negatives_per_positive == 0:
        neg_users, neg_items = _pairs(data.negatives)
    else:
        neg_users, neg_items = sample_negatives(
            data.train,
            data.candidates,
            pos_users.repeat(negatives_per_positive),
            generator(seed, epoch, _NEGATIVES),
        )
    users = torch.cat([pos_users, neg_users])
    items = torch.cat([pos_items, neg_items])
    labels = torch.cat([torch.ones(len(pos_users)), torch.zeros(len(neg_users))])
    order = torch.randperm(len(users), generator=generator(seed, epoch, _SHUFFLE))
    return users[order], items[order], labels[order]


def probe_points(n_pairs: int, batch_size: int, probe_every: int) -> list[int]:
    """The batches (counted 1-based within the epoch) after which an epoch of ``n_pairs``
    pairs in batches of ``batch_size`` is probed: the last one always, and with
    ``probe_every > 0`` as many as ``round(n_pairs / probe_every)`` (at least one), spread
    evenly. One point per epoch unless the epoch is at least 1.5 ``probe_every`` long."""
    n_batches = max(1, -(-n_pairs // batch_size))
    probes = 1 if probe_every <= 0 else max(1, min(n_batches, round(n_pairs / probe_every)))
    return [round(k * n_batches / probes) for k in range(1, probes + 1)]


def train(module: nn.Module, data: TrainData, config: TrainConfig, owner: Recommender) -> dict:
    """Fit ``module`` (``forward(users, items) -> logits``) in place with BCE and Adam.

    After each epoch, ``data.step(step, mean_loss, owner)`` reports it (``step`` 1-based:
    epochs completed) and may probe ``owner`` mid-training; with ``config.probe_every``
    a long epoch is reported several times (:func:`probe_points`), each with the mean loss
    since the last report, and ``step`` counts those reports. Early stopping
    (:class:`.EarlyStopping`, ``config.early_stopping``) decides on the probe whether to go
    on, and at the end ``module`` holds the best step's weights and buffers (a copy of its
    ``state_dict`` taken when that step became the best). ``owner.stopping`` says which
    step was kept and why training ended. ``data.on_batch`` (optional, the study's step
    curves) receives ``(step, batch loss)`` after every optimiser step (1-based, counted
    across epochs) and may probe ``owner``; returning ``True`` ends training there (the
    epoch is not reported). Returns throughput statistics: ``samples`` (pairs seen),
    ``train_s`` (seconds, probes excluded, step hooks included), ``samples_per_s``, and
    ``probes_per_epoch`` (of the last epoch).
    """
    device = resolve_device(owner.runtime.device)
    threads, numba_threads = torch.get_num_threads(), numba.get_num_threads()
    if owner.runtime.threads is not None:
        torch.set_num_threads(owner.runtime.threads)  # process-wide: restored below
    # the compiled kernels' threads (the negative sampler's) follow torch's
    most = numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]
    numba.set_num_threads(max(1, min(torch.get_num_threads(), most)))
    resources = contextlib.ExitStack()  # released in `finally`
    try:
        module.to(device)
        embeddings = [m for m in module.modules() if isinstance(m, nn.Embedding)]
        lazy = config.optimizer == "lazy_adam" and not config.weight_decay
        if lazy:
            for embedding in embeddings:
                embedding.sparse = True  # gradients of the touched rows only
            optimizer: torch.optim.Optimizer = LazyAdam(module.parameters(), lr=config.lr)
        else:
            # Dense Adam moves every embedding row each step, so a step costs
            # O(parameters): the fused kernel applies the rule in one pass.
            optimizer = torch.optim.Adam(
                module.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True
            )
        loss_fn = nn.BCEWithLogitsLoss()
        # MBCF on the CPU: the whole step in one compiled pass (LazyAdam.dot_step)
        fused = (
            lazy
            and isinstance(module, DotModule)
            and all(LazyAdam._compiled(e.weight) for e in (module.users, module.tracks))
        )
        # the hybrid on the CPU: the step without autograd (LazyAdam.hybrid_step)
        fused_hybrid = (
            lazy
            and isinstance(module, HybridModule)
            and all(LazyAdam._compiled(e.weight) for e in (module.users, module.tracks))
            and all(
                p.device.type == "cpu" and p.dtype == torch.float32 for p in module.parameters()
            )
        )
        if fused_hybrid:
            # its products run on two threads of their own: BLAS on one, whatever
            # OPENBLAS_NUM_THREADS says (two BLAS threads would run the halves in turn)
            resources.enter_context(one_blas_thread())
        stopper: EarlyStopping[dict[str, torch.Tensor]] = EarlyStopping(config)
        samples, seconds = 0, 0.0
        on_batch, steps, halted, stopped = data.on_batch, 0, False, False
        step, points = 0, [1]
        start, since = time.perf_counter(), 0  # since: pairs since the last report
        total = torch.zeros((), device=device)

        def report() -> bool:
            """Report the pairs since the last report (probe, curve, early stopping);
            whether to stop training now."""
            nonlocal total, since, start, seconds, samples, step
            mean_loss = total.item() / max(since, 1)  # .item() also waits for the GPU
            seconds += time.perf_counter() - start
            samples += since
            step += 1
            values = data.step(step, mean_loss, owner)
            stop = stopper.observe(step, values, lambda: _copy_state(module))
            start, since = time.perf_counter(), 0  # probes and state copies: not training
            total = torch.zeros((), device=device)
            return stop

        for epoch in range(config.epochs):
            start = time.perf_counter()
            module.train()
            users, items, labels = (
                t.to(device)
                for t in epoch_samples(
                    data, config.negatives_per_positive, config.seed, epoch, config.positives_only
                )
            )
            points = probe_points(len(users), config.batch_size, config.probe_every)
            total, since = torch.zeros((), device=device), 0
            before_batch = getattr(module, "before_batch", None)  # e.g. the two-tower's refresh
            for batch, lo in enumerate(range(0, len(users), config.batch_size)):
                hi = lo + config.batch_size
                if before_batch is not None:
                    before_batch(batch)
                loss: torch.Tensor | float
                if fused:
                    assert isinstance(optimizer, LazyAdam) and isinstance(module, DotModule)
                    loss = optimizer.dot_step(
                        module.users.weight,
                        module.tracks.weight,
                        users[lo:hi],
                        items[lo:hi],
                        labels[lo:hi],
                    )
                elif fused_hybrid:
                    assert isinstance(optimizer, LazyAdam) and isinstance(module, HybridModule)
                    loss = optimizer.hybrid_step(module, users[lo:hi], items[lo:hi], labels[lo:hi])
                else:
                    batch_loss = loss_fn(module(users[lo:hi], items[lo:hi]), labels[lo:hi])
                    optimizer.zero_grad(set_to_none=True)
                    batch_loss.backward()
                    optimizer.step()
                    loss = batch_loss.detach()
                total += loss * len(labels[lo:hi])
                since += len(labels[lo:hi])
                if on_batch is not None:
                    steps += 1
                    halted = bool(on_batch(steps, float(loss)))
                    module.train()  # the hook may have scored the model (eval mode)
                    if halted:
                        break
                if batch + 1 in points:
                    stopped = report()
                    if stopped:
                        break
                    module.train()  # the probe scored the model (eval mode)
            if halted:
                seconds += time.perf_counter() - start
                samples += since
                break
            if stopped or (len(users) == 0 and report()):  # an empty epoch is reported too
                break
        best = stopper.restore_state()
        if best is not None:
            module.load_state_dict(best)
        owner.stopping = stopper.outcome
        return {
            "samples": samples,
            "train_s": round(seconds, 3),
            "samples_per_s": round(samples / seconds, 1) if seconds > 0 else None,
            "probes_per_epoch": len(points),
        }
    finally:
        for embedding in [m for m in module.modules() if isinstance(m, nn.Embedding)]:
            embedding.sparse = False
        after_training = getattr(module, "after_training", None)  # e.g. drop a snapshot
        if after_training is not None:
            after_training()
        resources.close()
        torch.set_num_threads(threads)
        numba.set_num_threads(numba_threads)


def _copy_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of ``module``'s ``state_dict`` (weights and saved buffers), on its device."""
    return {name: value.detach().clone() for name, value in module.state_dict().items()}
