"""The paper's optimizer: BiLSTM partition and compression policies trained with REINFORCE.

Section 6.1 / 6.3 and Algorithm 2 of Zhang et al.:

* The **partition policy** reads the layer table (one row per layer: type, kernel, stride,
  padding, channels) with a bidirectional LSTM; a linear layer maps each layer's hidden state
  to one logit, and a softmax over the allowed partition layers gives ``pi_p(a_p)``.
* The **compression policy** reads the same table extended with the decisions so far (on the
  device or not, the technique already chosen per layer, a cursor flag); at each device layer
  ``t`` the linear layer maps the cursor's hidden state to one logit per technique of the
  env (``none`` included) and a masked softmax gives ``pi_c(a_t | s_{t-1})``.  The table is
  updated after every choice (``s_t = T_c(s_{t-1}, a_t)``), as in Algorithm 2, lines 6-9.
* Each episode samples ``M`` plans (one ``evaluate_many`` batch) and takes one Adam step per
  policy on Eq. 17: ``-(1/M) sum_j (R_j - b) sum_t log pi(a_{j,t})`` — the log-probabilities
  of a plan's compression steps are summed — with ``b`` an exponential moving average of
  past episode rewards (initialised to the first episode's mean).  Invalid actions get
  probability 0 (masked logits).

Per-layer features never depend on the network's length, so a policy trained on one base
network runs unchanged on another (section 7.4); only the technique list must match.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn

from privacysplit.agents.base import BaseSearcher, SearchRun, check_positive, unwrap
from privacysplit.models import LAYER_TYPES, LayerSpec
from privacysplit.plan import Plan

#: file format of :meth:`BiLSTMSearcher.save`
FORMAT_VERSION = 1

#: per-layer static features: one-hot type, kernel, stride, padding, in/out channels (log)
N_STATIC = len(LAYER_TYPES) + 5


def layer_features(layers: list[LayerSpec]) -> np.ndarray:
    """The static layer table ``(n_layers, N_STATIC)``, each entry in [0, 1]."""
    table = np.zeros((len(layers), N_STATIC), np.float32)
    t = len(LAYER_TYPES)
    for i, spec in enumerate(layers):
        table[i, LAYER_TYPES.index(spec.type)] = 1.0
        table[i, t:] = [
            min(spec.kernel / 11, 1), min(spec.stride / 4, 1), min(spec.padding / 5, 1),
            min(math.log2(1 + spec.in_channels) / 16, 1), min(math.log2(1 + spec.out_channels) / 16, 1),
        ]
    return table


class BiLSTMPolicy(nn.Module):
    """Bidirectional LSTM over the layer table, then a linear layer per position.

    Args:
        in_features: features per layer.
        n_out: outputs per layer (1 for the partition policy, one per technique for the
            compression policy).
        hidden_size: LSTM hidden size per direction.
        num_layers: stacked LSTM layers.
    """

    def __init__(self, in_features: int, n_out: int, hidden_size: int = 64, num_layers: int = 1) -> None:
        super().__init__()
        self.lstm = nn.LSTM(in_features, hidden_size, num_layers=num_layers, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden_size, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, n_layers, in_features)`` -> logits ``(batch, n_layers, n_out)``."""
        hidden, _ = self.lstm(x)
        return self.head(hidden)


def _masked_log_softmax(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits.masked_fill(~mask, -1e9), dim=-1)


@dataclass
class BiLSTMConfig:
    seed: int = 0
    """seed of the policy initialisation and of action sampling"""
    rollouts: int = 5
    """M, plans sampled per episode (evaluated as one batch); the paper uses 1, 5 or 10"""
    lr_partition: float = 0.03
    """Adam learning rate of the partition policy (paper: 0.03)"""
    lr_compression: float = 0.003
    """Adam learning rate of the compression policy (paper: 0.003)"""
    baseline_decay: float = 0.9
    """EMA factor of the baseline b (Eq. 17): ``b <- decay * b + (1 - decay) * mean(R)``"""
    hidden_size: int = 64
    """LSTM hidden units per direction"""
    num_layers: int = 1
    """stacked LSTM layers"""
    entropy_coef: float = 0.0
    """weight of an entropy bonus (0 = plain REINFORCE as in the paper)"""
    normalize_advantages: bool = False
    """divide each episode's advantages by their standard deviation (not in the paper)"""
    max_grad_norm: float | None = None
    """clip gradient norm per policy (``None``: no clipping)"""
    memory: bool = True
    """the paper's memory pool (section 7.2, "Speedup"): a sampled plan this search has
    already evaluated takes its reward from the pool instead of a new evaluation, so only
    new plans spend budget; the policy still learns from every rollout"""
    patience: int = 20
    """with ``memory``: stop (``stop_reason="converged"``) after this many episodes in a row
    that proposed no new plan"""
    greedy_final: bool = False
    """after the budget's episodes, spend one last evaluation on the policy's greedy plan
    (reserved from the budget)"""

    def __post_init__(self) -> None:
        check_positive("rollouts", self.rollouts)
        check_positive("patience", self.patience)
        check_positive("hidden_size", self.hidden_size)
        check_positive("num_layers", self.num_layers)
        for name in ("lr_partition", "lr_compression"):
            check_positive(name, getattr(self, name), integer=False)
        check_positive("max_grad_norm", self.max_grad_norm, integer=False, allow_none=True)
        if not 0.0 <= self.baseline_decay < 1.0:
            raise ValueError(f"baseline_decay must be in [0, 1), got {self.baseline_decay!r}")
        if self.entropy_coef < 0:
            raise ValueError(f"entropy_coef must be >= 0, got {self.entropy_coef!r}")


@dataclass
class Rollout:
    """One sampled plan with what REINFORCE needs to recompute its log-probabilities."""

    plan: Plan
    partition: int
    states: list[np.ndarray]
    """compression-policy input table before each compression step"""
    cursors: list[int]
    """layer index decided at each compression step"""
    actions: list[int]
    """technique index chosen at each compression step"""
    masks: list[np.ndarray]
    """valid techniques at each compression step"""


class BiLSTMSearcher(BaseSearcher):
    """REINFORCE with BiLSTM partition and compression policies (the paper's optimizer).

    The policies are built on the first :meth:`search` (they need the env's technique list)
    or by :meth:`load`.  Everything a resumed search needs — both policies, both Adam
    optimizers, the baseline, the episode counter and the sampler's RNG — is in
    :meth:`state_dict`.
    """

    name = "bilstm"
    Config = BiLSTMConfig
    checkpointable = True

    def __init__(self, config: BiLSTMConfig | None = None, **options) -> None:
        super().__init__(config, **options)
        self.techniques: list[str] | None = None
        self.partition_policy: BiLSTMPolicy | None = None
        self.compression_policy: BiLSTMPolicy | None = None
        self.partition_optimizer: torch.optim.Adam | None = None
        self.compression_optimizer: torch.optim.Adam | None = None
        self.baseline: float | None = None
        self.episodes = 0
        self.rng = np.random.default_rng(self.config.seed)
        self.pool: dict[str, float] = {}  # the memory pool of the current search: plan -> reward
        self.stale = 0  # episodes in a row without a new plan

    # -- construction --------------------------------------------------------------
    @property
    def built(self) -> bool:
        return self.partition_policy is not None

    def build(self, techniques: list[str]) -> None:
        """Create fresh policies and optimizers for ``techniques`` (seeded by ``config.seed``)."""
        cfg: BiLSTMConfig = self.config
        self.techniques = list(techniques)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.partition_policy = BiLSTMPolicy(N_STATIC, 1, cfg.hidden_size, cfg.num_layers)
            self.compression_policy = BiLSTMPolicy(self.n_compression_features, len(self.techniques), cfg.hidden_size, cfg.num_layers)
        self.partition_optimizer = torch.optim.Adam(self.partition_policy.parameters(), lr=cfg.lr_partition)
        self.compression_optimizer = torch.optim.Adam(self.compression_policy.parameters(), lr=cfg.lr_compression)

    @property
    def n_compression_features(self) -> int:
        # static + on-device flag + technique chosen (one-hot) + cursor flag
        return N_STATIC + 1 + len(self.techniques) + 1

    def _ensure_built(self, space) -> None:
        if not self.built:
            self.build(space.techniques)
        elif list(space.techniques) != self.techniques:
            raise ValueError(
                f"this policy was built for techniques {self.techniques}, the env offers "
                f"{list(space.techniques)}; create the env with techniques={self.techniques[1:]}"
            )

    # -- sampling ------------------------------------------------------------------
    def _partition_logprobs(self, static: torch.Tensor, space) -> torch.Tensor:
        """Log pi_p over layers (``-inf``-like where the partition is not allowed)."""
        logits = self.partition_policy(static[None])[0, :, 0]
        mask = torch.zeros(len(space.layers), dtype=torch.bool)
        mask[space.partitions] = True
        return _masked_log_softmax(logits, mask)

    def _technique_mask(self, space, layer: int) -> np.ndarray:
        allowed = set(space.choices(layer))
        return np.array([t in allowed for t in self.techniques], dtype=bool)

    def _compression_table(self, static: np.ndarray, partition: int) -> np.ndarray:
        table = np.zeros((len(static), self.n_compression_features), np.float32)
        table[:, :N_STATIC] = static
        table[: partition + 1, N_STATIC] = 1.0
        return table

    def _choose(self, logp: torch.Tensor, greedy: bool) -> int:
        probs = logp.exp().double().numpy()
        if greedy:
            return int(np.argmax(probs))
        cdf = np.cumsum(probs)
        return int(min(np.searchsorted(cdf, self.rng.random() * cdf[-1], side="right"), len(probs) - 1))

    @torch.no_grad()
    def rollout(self, space, *, greedy: bool = False, partition: int | None = None) -> Rollout:
        """Sample (or, with ``greedy``, decode the most probable) plan from the policies.

        ``partition`` fixes the partition instead of sampling it.
        """
        self._ensure_built(space)
        static = layer_features(space.layers)
        if partition is None:
            partition = self._choose(self._partition_logprobs(torch.from_numpy(static), space), greedy)
        table = self._compression_table(static, partition)
        cursor_col, offset = self.n_compression_features - 1, N_STATIC + 1
        rollout = Rollout(Plan(partition), partition, [], [], [], [])
        chosen: dict[int, str] = {}
        for layer in space.compressible(partition):
            table[layer, cursor_col] = 1.0
            mask = self._technique_mask(space, layer)
            logits = self.compression_policy(torch.from_numpy(table)[None])[0, layer]
            action = self._choose(_masked_log_softmax(logits, torch.from_numpy(mask)), greedy)
            rollout.states.append(table.copy())
            rollout.cursors.append(layer)
            rollout.actions.append(action)
            rollout.masks.append(mask)
            table[layer, cursor_col] = 0.0
            table[layer, offset + action] = 1.0
            chosen[layer] = self.techniques[action]
        rollout.plan = Plan(partition, chosen)
        return rollout

    def greedy_plan(self, env_or_space) -> Plan:
        """The policy's most probable plan (step by step) on an env or a search space."""
        return self.rollout(_space(env_or_space), greedy=True).plan

    @torch.no_grad()
    def action_probabilities(self, env_or_space, partition: int | None = None) -> dict:
        """Action probabilities along the greedy decoding.

        Returns ``{"partition": probs over layers, "compression": {layer: probs over
        techniques}}`` for the compression steps after ``partition`` (default: the last
        allowed partition, so every compressible layer is visited).
        """
        space = _space(env_or_space)
        self._ensure_built(space)
        static = layer_features(space.layers)
        part = self._partition_logprobs(torch.from_numpy(static), space).exp().numpy()
        partition = space.partitions[-1] if partition is None else partition
        r = self.rollout(space, greedy=True, partition=partition)
        comp = {}
        for state, layer, mask in zip(r.states, r.cursors, r.masks, strict=True):
            logits = self.compression_policy(torch.from_numpy(state)[None])[0, layer]
            comp[layer] = _masked_log_softmax(logits, torch.from_numpy(mask)).exp().numpy()
        return {"partition": part, "compression": comp}

    # -- learning ------------------------------------------------------------------
    def update(self, space, rollouts: list[Rollout], rewards: list[float]) -> dict[str, float]:
        """One REINFORCE step per policy on Eq. 17; returns the losses and the baseline."""
        cfg: BiLSTMConfig = self.config
        m = len(rollouts)
        r = torch.tensor(rewards, dtype=torch.float32)
        if self.baseline is None:
            self.baseline = float(r.mean())
        adv = r - self.baseline
        if cfg.normalize_advantages and m > 1:
            adv = adv / (adv.std() + 1e-8)
        static = torch.from_numpy(layer_features(space.layers))
        # partition: L = 1
        logp_part = self._partition_logprobs(static, space)
        chosen = torch.tensor([ro.partition for ro in rollouts])
        part_logp = logp_part[chosen]
        part_entropy = -(logp_part.exp() * logp_part.clamp_min(-1e4)).sum()
        part_loss = -(adv * part_logp).mean() - cfg.entropy_coef * part_entropy
        # compression: the log-probabilities of a plan's steps are summed, then averaged over M
        owners = [j for j, ro in enumerate(rollouts) for _ in ro.actions]
        comp_loss = torch.zeros(())
        comp_entropy = torch.zeros(())
        if owners:
            states = torch.from_numpy(np.stack([s for ro in rollouts for s in ro.states]))
            cursors = torch.tensor([c for ro in rollouts for c in ro.cursors])
            actions = torch.tensor([a for ro in rollouts for a in ro.actions])
            masks = torch.from_numpy(np.stack([k for ro in rollouts for k in ro.masks]))
            logits = self.compression_policy(states)[torch.arange(len(owners)), cursors]
            logp = _masked_log_softmax(logits, masks)
            step_logp = logp.gather(1, actions[:, None])[:, 0]
            comp_loss = -(adv[torch.tensor(owners)] * step_logp).sum() / m
            comp_entropy = -(logp.exp() * logp.clamp_min(-1e4)).sum() / m
            comp_loss = comp_loss - cfg.entropy_coef * comp_entropy
        for loss, policy, opt in (
            (part_loss, self.partition_policy, self.partition_optimizer),
            (comp_loss, self.compression_policy, self.compression_optimizer),
        ):
            opt.zero_grad()
            if loss.requires_grad:
                loss.backward()
                if cfg.max_grad_norm is not None:
                    nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
                opt.step()
        self.baseline = cfg.baseline_decay * self.baseline + (1 - cfg.baseline_decay) * float(r.mean())
        self.episodes += 1
        return {
            "losses/policy": float(part_loss.detach() + comp_loss.detach()),
            "losses/partition": float(part_loss.detach()),
            "losses/compression": float(comp_loss.detach()),
            "losses/entropy_partition": float(part_entropy.detach()),
            "losses/entropy_compression": float(comp_entropy.detach()),
            "charts/baseline": self.baseline,
            "charts/episode_reward": float(r.mean()),
        }

    def run(self, env, run: SearchRun) -> None:
        cfg: BiLSTMConfig = self.config
        space = run.space
        self._ensure_built(space)
        reserve = 1 if cfg.greedy_final and run.budget > 1 else 0
        pool = self.pool
        while not run.done and run.remaining > reserve:
            rollouts = [self.rollout(space) for _ in range(cfg.rollouts)]
            plans = [str(ro.plan) for ro in rollouts]
            if cfg.memory:
                fresh = list(dict.fromkeys(p for p in plans if p not in pool))
                infos = run.evaluate(fresh[: run.remaining - reserve])
                pool.update((i["plan"], float(i["reward"])) for i in infos)
                self.stale = 0 if infos else self.stale + 1
                if self.stale >= cfg.patience:
                    run.stop("converged")
                kept = [ro for ro in rollouts if str(ro.plan) in pool]
                rewards = [pool[str(ro.plan)] for ro in kept]
                run.note_repeats(len(kept) - len(infos))  # answered by the pool: free proposals
            else:
                infos = run.evaluate(plans[: run.remaining - reserve])
                kept, rewards = rollouts[: len(infos)], [float(i["reward"]) for i in infos]
            if not kept:
                continue
            stats = self.update(space, kept, rewards)
            for tag, value in stats.items():
                run.log_scalar(tag, value)
            run.save_checkpoint(self.state_dict())
        if reserve and not run.done:
            run.evaluate([str(self.greedy_plan(space))])

    def reset_search(self) -> None:
        self.pool, self.stale = {}, 0

    # -- checkpoints ---------------------------------------------------------------
    def state_dict(self) -> dict:
        """Policies, optimizers, baseline, episode count, sampler RNG and the current
        search's memory pool (torch-saveable with ``weights_only=True``)."""
        if not self.built:
            raise ValueError("the policy is not built yet: run search() or load() first")
        return copy.deepcopy({  # detached from the live tensors (Adam's load shares them)
            "format": FORMAT_VERSION,
            "config": asdict(self.config),
            "techniques": list(self.techniques),
            "partition_policy": self.partition_policy.state_dict(),
            "compression_policy": self.compression_policy.state_dict(),
            "partition_optimizer": self.partition_optimizer.state_dict(),
            "compression_optimizer": self.compression_optimizer.state_dict(),
            "baseline": self.baseline,
            "episodes": self.episodes,
            "rng": self.rng.bit_generator.state,
            "pool": dict(self.pool),
            "stale": self.stale,
        })

    def load_state_dict(self, state: dict, *, policy_only: bool = False) -> None:
        """Restore :meth:`state_dict`.  ``policy_only`` keeps this searcher's optimizers,
        baseline, counter and RNG fresh (a transferred start rather than a resume).

        Raises:
            ValueError: when the saved architecture differs from this searcher's config.
        """
        if state.get("format") != FORMAT_VERSION:
            raise ValueError(f"unsupported bilstm checkpoint format {state.get('format')!r}; expected {FORMAT_VERSION}")
        saved = state["config"]
        for key in ("hidden_size", "num_layers"):
            if saved[key] != getattr(self.config, key):
                raise ValueError(
                    f"checkpoint has {key}={saved[key]}, this searcher {key}={getattr(self.config, key)}; "
                    "use BiLSTMSearcher.from_file(path) to take the checkpoint's architecture"
                )
        self.build(state["techniques"])
        self.partition_policy.load_state_dict(state["partition_policy"])
        self.compression_policy.load_state_dict(state["compression_policy"])
        if not policy_only:
            self.partition_optimizer.load_state_dict(state["partition_optimizer"])
            self.compression_optimizer.load_state_dict(state["compression_optimizer"])
            self.baseline = state["baseline"]
            self.episodes = int(state["episodes"])
            self.rng.bit_generator.state = state["rng"]
            self.pool, self.stale = dict(state.get("pool", {})), int(state.get("stale", 0))

    def save(self, path: str | Path) -> Path:
        """Write :meth:`state_dict` with ``torch.save``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(), path)
        return path

    def load(self, path: str | Path, *, policy_only: bool = False) -> BiLSTMSearcher:
        """Load a checkpoint written by :meth:`save` (``weights_only=True``); returns self."""
        self.load_state_dict(torch.load(path, weights_only=True), policy_only=policy_only)
        return self

    @classmethod
    def from_file(cls, path: str | Path, *, policy_only: bool = False, **overrides) -> BiLSTMSearcher:
        """A searcher with the checkpoint's config (``overrides`` replace fields, e.g. a new
        ``seed``) and its weights — e.g. a policy trained on VGG11 to start on VGG13."""
        state = torch.load(path, weights_only=True)
        valid = {f.name for f in fields(BiLSTMConfig)}
        config = {k: v for k, v in state["config"].items() if k in valid}
        config.update(overrides)
        agent = cls(**config)
        agent.load_state_dict(state, policy_only=policy_only)
        return agent


def _space(env_or_space):
    if hasattr(env_or_space, "partitions") and hasattr(env_or_space, "compressible"):
        return env_or_space
    return unwrap(env_or_space).space
