"""The ``PrivacySplit-v0`` environment."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from privacysplit._validate import check_int
from privacysplit.envs.evaluator import Evaluator
from privacysplit.models import LAYER_TYPES
from privacysplit.plan import Plan

PHASE_PARTITION, PHASE_COMPRESS = 0, 1


class PrivacySplitEnv(gym.Env):
    """Split a network between phone and cloud and compress the phone's part.

    ## Description

    Section 6 of Zhang et al., *Preventing Information Leakage with Neural Architecture
    Search*.  The state is the base network as a table of layers; the agent first picks the
    partition layer (the last layer kept on the device), then one compression technique of
    the paper's Table 2 (or ``none``) for each device-side layer, in order.  The last step
    builds the plan, retrains the split network, attacks its released features (Algorithm 1)
    and scores accuracy, privacy loss and on-device resource saving (Eq. 13 or Eq. 18).

    ## Action Space

    ``Discrete(max(max_layers, n_techniques))`` (``max_layers`` defaults to the network's
    layer count; a larger value pads the action space and the observation alike, so one
    agent can move between networks with SB3's ``set_env``).  In the partition phase action ``a`` keeps
    layers ``0..a`` on the device.  In the compression phase action ``a`` picks
    ``techniques[a]`` (``info["techniques"]``; index 0 is ``none``) for the layer under the
    cursor.  Layers where only ``none`` applies (activations, pooling, batch norm, dropout)
    are passed over without a step.  :meth:`action_masks` returns the valid actions
    (sb3-contrib's convention).  An invalid action is a no-op reported as
    ``info["invalid_action"]``: in the partition phase the state does not change, in the
    compression phase the layer stays uncompressed.  After ``max_invalid`` invalid actions
    in one episode it is truncated with reward 0.

    ## Observation Space

    ``Box(0, 1, (max_layers * F + 2,), float32)``: for every layer (zero rows pad networks
    shorter than ``max_layers``) the one-hot layer type, kernel/11, stride/4, padding/5,
    log2(1 + in_channels)/16, log2(1 + out_channels)/16 (clipped to 1), an on-device flag,
    the one-hot technique chosen so far, a cursor flag and an exists flag; then the one-hot
    phase.

    ## Rewards

    0 on every step but the last.  The last returns ``R = R_A * R_P * R_S`` (Eq. 13) with
    ``R_A = min(A / A_base, 1)``, ``R_P = 1 - P`` and ``R_S = S (2 - S)``, times the
    indicator of Eq. 18 when ``thresholds`` are given.  Always in [0, 1]; 0 for an
    evaluation that failed (``info["error"]``).

    Every plan of one setting retrains on the same training images and is measured on the
    same validation images.  A_base is the unsplit, uncompressed network (the plan
    ``"<last layer> | none"``) put through the same retraining for as many epochs as a plan
    of the chosen threat trains (N_ec reactive; proactive: the game's joint epochs,
    ``attacks.retraining.base_schedule``): under
    ``threat="reactive"`` that plan scores exactly A_base and R_A = 1.

    ## Episode End

    Terminates after the compression choice for the last compressible device layer (or
    right after the partition when no device layer can be compressed); truncated after
    ``max_invalid`` invalid actions.  ``step()`` after the end and before ``reset()`` raises
    ``gymnasium.error.ResetNeeded``.

    ## Info

    Every step's info has ``invalid_action``; non-terminal steps add ``phase``
    (``"compress"``) and ``reset()`` returns ``phase`` and ``techniques``.  The terminal info
    (also what ``env.unwrapped.evaluate(plan)`` returns, except that it keeps the packed
    samples as ``reconstruction`` instead of ``reconstruction_png``):

    * the plan and the reward: ``plan``, ``reward``, its factors ``R_A``, ``R_P``, ``R_S``,
      ``reward_name`` (``eq13`` or ``eq18``);
    * accuracy: ``accuracy`` (held-out, retrained split network), ``accuracy_base`` (A_base);
    * privacy: ``privacy_loss`` (the P in the reward), ``privacy_metric``; inversion:
      ``ssim``, ``mse``, ``mse_norm`` (MSE / MSE_mean), ``mse_mean`` and ``ssim_mean`` (of
      always answering the mean image), ``inv_mse`` (the paper's 1/MSE), ``attacker`` (the
      decoder that won), ``score_<decoder>`` (each candidate's privacy loss) and
      ``attack_fallback`` (1 when the attack prior no longer fitted and another attacker
      took over, ``Fidelity.shift_attack``), ``attack_restarts`` (its warm restarts,
      ``Fidelity.proactive_restarts``), ``attack_images`` (its auxiliary set's size,
      ``Fidelity.proactive_aux``), ``attack_steps`` (its optimiser steps, every candidate
      and round together, of both attackers under ``attack_input="both"``), and where the
      attacker read anything but standardised features (``Fidelity.attack_input``, ``auto``
      resolved) ``attack_input`` (``whiten`` or ``both``) and, for ``both``, ``attack_input_won``
      (the input whose attacker counted); property
      inference: ``property_accuracy``, ``property_chance``; under ``threat="proactive"``
      ``game`` (the proactive game's objective: ``dcor``, ``dcor_kd``, ``dcor_ridge`` or ``decoder``); ``reconstruction_png``: a PNG of
      originals (top) and the attacker's reconstructions (bottom), written beside the cache;
    * resources: ``resource`` (the S in the reward), ``resource_metric``, the savings ``S1``
      (parameters), ``S2`` (MACs), ``S3`` (latency); the device part's ``params``, ``macs``,
      ``latency_s``, ``feature_bytes`` (sent per input) against ``params_total``,
      ``macs_total``, ``latency_total_s`` of the whole network on the device;
    * bookkeeping: ``cache_hit``, ``eval_seconds`` (and its parts ``data_seconds``,
      ``train_seconds``, ``attack_seconds``, ``prior_seconds``, ``select_seconds``,
      ``fit_seconds``, ``measure_seconds``), ``threads`` (torch threads it ran with),
      ``fidelity``, ``threat``; ``error`` and ``traceback`` when the evaluation failed.

    ## Arguments

    ``base`` (default ``lenet``; or an ``nn.Module`` of your own, or ``"file.py:factory"``),
    ``weights`` (a ``state_dict`` path to start from instead of training the base),
    ``dataset`` (``mnist``; or your own data, see :mod:`privacysplit.data.tensors`), ``data_root``, ``fidelity``
    (``smoke``/``cpu``/``paper`` or a ``Fidelity``), ``threat`` (``reactive``/``proactive``),
    ``privacy`` (``mse``/``ssim``/``property``), ``resource`` (``params``/``macs``/``latency``),
    ``thresholds`` (``(A_m, P_m, S_m)``), ``techniques`` (subset of Table 2), ``partitions``
    (allowed partition indices), ``settings`` (compression strengths), ``device``,
    ``cache`` (SQLite path, or ``"off"``), ``seed`` (base training and evaluation seed),
    ``profile`` (device profile for latency), ``feature_noise``, ``game`` (the proactive game), ``max_layers`` (pad the
    observation to this many layers, for agents shared across networks), ``max_invalid``,
    ``executor`` (``inprocess``/``process``/``ray``) and ``workers`` for batch evaluation.

    ## Version History

    * v0: initial version.  Action space padded to ``max_layers``; ``action_masks()`` is
      ``int8``; stepping a finished episode raises (all before the first release).
    """

    metadata = {"render_modes": ["ansi", "rgb_array"]}

    def __init__(
        self,
        base: str = "lenet",
        dataset: str = "mnist",
        *,
        data_root: str | Path | None = None,
        fidelity="cpu",
        threat: str = "reactive",
        privacy: str = "ssim",
        resource: str = "params",
        thresholds=None,
        techniques: list[str] | None = None,
        partitions: list[int] | None = None,
        settings=None,
        device: str | None = "cpu",
        cache=None,
        seed: int = 0,
        profile=None,
        feature_noise: float = 0.0,
        game: str | None = None,
        max_layers: int | None = None,
        max_invalid: int = 100,
        executor: str = "inprocess",
        workers: int = 1,
        render_mode: str | None = None,
        evaluator: Evaluator | None = None,
        weights=None,
    ) -> None:
        super().__init__()
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"unknown render_mode {render_mode!r}; valid: ansi, rgb_array")
        self.render_mode = render_mode
        self.evaluator = evaluator if evaluator is not None else Evaluator(
            base, dataset, data_root=data_root, fidelity=fidelity, threat=threat, privacy=privacy,
            resource=resource, thresholds=thresholds, techniques=techniques, partitions=partitions,
            settings=settings, device=device, cache=cache, seed=seed, profile=profile,
            feature_noise=feature_noise, game=game, executor=executor, workers=workers, weights=weights,
        )
        self.space = self.evaluator.space
        self.layers = self.space.layers
        self.techniques = self.space.techniques
        n = len(self.layers)
        self.max_layers = n if max_layers is None else int(max_layers)
        if self.max_layers < n:
            raise ValueError(f"max_layers={max_layers} is smaller than {self.evaluator.base_name}'s {n} layers")
        self.max_invalid = check_int("max_invalid", max_invalid, minimum=1)
        self.n_features = len(LAYER_TYPES) + 5 + 1 + len(self.techniques) + 2
        # sized by max_layers (not this network's length) so one agent can be moved between
        # networks of different depths with SB3's set_env: both spaces must match
        self.action_space = spaces.Discrete(max(self.max_layers, len(self.techniques)))
        self.observation_space = spaces.Box(0.0, 1.0, (self.max_layers * self.n_features + 2,), np.float32)
        self._static = self._static_table()
        self._tech_index = {t: i for i, t in enumerate(self.techniques)}
        self._reset_state()

    # -- state -----------------------------------------------------------------------
    def _static_table(self) -> np.ndarray:
        table = np.zeros((self.max_layers, self.n_features), np.float32)
        t = len(LAYER_TYPES)
        for i, spec in enumerate(self.layers):
            table[i, LAYER_TYPES.index(spec.type)] = 1.0
            table[i, t : t + 5] = [
                min(spec.kernel / 11, 1), min(spec.stride / 4, 1), min(spec.padding / 5, 1),
                min(np.log2(1 + spec.in_channels) / 16, 1), min(np.log2(1 + spec.out_channels) / 16, 1),
            ]
            table[i, -1] = 1.0  # exists
        return table

    def _reset_state(self) -> None:
        self.phase = PHASE_PARTITION
        self.partition: int | None = None
        self.queue: list[int] = []
        self.cursor = 0
        self.chosen: dict[int, str] = {}
        self.invalid = 0
        self.ended = False  # terminated or truncated: step() needs a reset() first
        self._table = self._static.copy()

    @property
    def cursor_layer(self) -> int | None:
        return self.queue[self.cursor] if self.phase == PHASE_COMPRESS else None

    def _obs(self) -> np.ndarray:
        phase = np.zeros(2, np.float32)
        phase[self.phase] = 1.0
        return np.concatenate([self._table.ravel(), phase])

    def _set_cursor(self, layer: int | None, value: float) -> None:
        if layer is not None:
            self._table[layer, -2] = value

    def action_masks(self) -> np.ndarray:
        """Valid actions of the current step (sb3-contrib's ``MaskablePPO`` convention).

        An ``int8`` array of 0/1, the dtype ``Discrete.sample(mask=...)`` asks for in
        Gymnasium 1.x, so ``env.action_space.sample(mask=env.unwrapped.action_masks())``
        works as written; MaskablePPO reads it as booleans.
        """
        mask = np.zeros(self.action_space.n, dtype=np.int8)
        if self.phase == PHASE_PARTITION:
            mask[self.space.partitions] = 1
        else:
            for name in self.space.choices(self.cursor_layer):
                mask[self._tech_index[name]] = 1
        return mask

    # -- gym API -----------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._reset_state()
        return self._obs(), {"phase": "partition", "techniques": list(self.techniques)}

    def step(self, action):
        if self.ended:
            raise gym.error.ResetNeeded(
                "the episode has ended (terminated or truncated); call reset() before step() — "
                "stepping on would build a plan from the finished episode's state"
            )
        a = self._action_index(action)
        info: dict = {"invalid_action": False}
        valid = 0 <= a < self.action_space.n and bool(self.action_masks()[a])
        if not valid:
            info["invalid_action"] = True
            self.invalid += 1
        if self.phase == PHASE_PARTITION:
            if not valid:
                truncated = self.invalid >= self.max_invalid
                if truncated:
                    info["error"] = f"{self.invalid} invalid actions in one episode"
                    self.ended = True
                return self._obs(), 0.0, False, truncated, info
            self.partition = a
            self._table[: a + 1, len(LAYER_TYPES) + 5] = 1.0
            self.queue = self.space.compressible(a)
            if not self.queue:
                return self._finish(info)
            self.phase, self.cursor = PHASE_COMPRESS, 0
            self._set_cursor(self.cursor_layer, 1.0)
            info["phase"] = "compress"
            return self._obs(), 0.0, False, False, info
        layer = self.cursor_layer
        name = self.techniques[a] if valid else "none"
        self.chosen[layer] = name
        self._table[layer, len(LAYER_TYPES) + 6 + self._tech_index[name]] = 1.0
        self._set_cursor(layer, 0.0)
        self.cursor += 1
        if self.cursor >= len(self.queue):
            return self._finish(info)
        self._set_cursor(self.cursor_layer, 1.0)
        info["phase"] = "compress"
        return self._obs(), 0.0, False, False, info

    def _action_index(self, action) -> int:
        """An integer action as an ``int``: a Python or numpy integer, or an integer array of
        one element (what a vectorised policy hands a single env).  Anything else (a float,
        a bool, several values) is a caller's mistake, refused in one line; an integer
        outside the action space stays an invalid action (a no-op, counted)."""
        value = action
        if isinstance(value, np.ndarray) and value.size == 1 and np.issubdtype(value.dtype, np.integer):
            value = value.reshape(()).item()
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise ValueError(
                f"action must be an integer in 0..{self.action_space.n - 1} (an int, a numpy integer or a "
                f"one-element integer array), got {action!r}"
            )
        return int(value)

    def _finish(self, info: dict):
        plan = self.current_plan()
        result = self.evaluator.evaluate(plan)
        info.update(self._readable(result))
        self.phase = PHASE_PARTITION  # a finished episode must be reset; masks stay valid
        self.ended = True
        return self._obs(), float(result["reward"]), True, False, info

    def _readable(self, result: dict) -> dict:
        """The terminal info: the evaluator's result, with the packed reconstruction samples
        written once to a PNG beside the evaluation cache (``reconstruction_png``) instead of
        riding along as a base64 string nobody can read."""
        out = {k: v for k, v in result.items() if k != "reconstruction"}
        if result.get("reconstruction"):
            import hashlib

            from privacysplit.attacks.samples import save_png
            from privacysplit.training import cache_dir

            blob = result["reconstruction"]
            cache = getattr(getattr(self.evaluator, "cache", None), "path", None)
            folder = (Path(cache).parent if cache is not None else cache_dir()) / "reconstructions"
            path = folder / f"{hashlib.sha256(blob.encode()).hexdigest()[:16]}.png"
            out["reconstruction_png"] = str(path) if path.exists() else save_png(blob, path)
        return out

    def current_plan(self) -> Plan:
        """The plan chosen so far (layers not yet visited count as ``none``)."""
        if self.partition is None:
            raise ValueError("no partition chosen yet")
        return Plan(self.partition, self.chosen)

    def evaluate(self, plan: Plan | str) -> dict:
        """Score a plan without stepping: the terminal ``info`` plus ``reward``."""
        return self.evaluator.evaluate(plan)

    def evaluate_many(self, plans: list[Plan | str]) -> list[dict]:
        """Score several plans at once (a parallel executor runs them together)."""
        return self.evaluator.evaluate_many(plans)

    def close(self) -> None:
        self.evaluator.close()
        super().close()

    def render(self):
        """``ansi``: the layer table as text.  ``rgb_array``: one 8-pixel band per layer
        (blue on the device, grey in the cloud, the band's right half coloured by the chosen
        technique, the cursor in white), which SB3's video tools can record."""
        if self.render_mode == "rgb_array":
            img = np.zeros((8 * len(self.layers), 64, 3), np.uint8)
            for i in range(len(self.layers)):
                on_device = self.partition is not None and i <= self.partition
                img[8 * i : 8 * i + 7, :32] = (40, 90, 200) if on_device else (120, 120, 120)
                if i in self.chosen:
                    hue = self._tech_index[self.chosen[i]] / max(len(self.techniques) - 1, 1)
                    img[8 * i : 8 * i + 7, 32:] = (int(255 * hue), int(255 * (1 - hue)), 80)
                if i == self.cursor_layer:
                    img[8 * i : 8 * i + 7, 28:36] = 255
            return img
        if self.render_mode != "ansi":
            return None
        lines = []
        for i, spec in enumerate(self.layers):
            where = "device" if self.partition is not None and i <= self.partition else "cloud "
            mark = ">" if i == self.cursor_layer else " "
            lines.append(f"{mark}{i:3d} {where} {spec!s:40s} {self.chosen.get(i, '')}")
        return "\n".join(lines)
