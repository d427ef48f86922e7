"""Turn a user's ``torch.nn.Module`` into a :class:`Network`: a chain of layers.

The searcher needs a network as a list of layers it can cut after any index.  A user's
module becomes one as follows:

* an ``nn.Sequential`` is read child by child, nested Sequentials opened, so layer ``i`` is
  ``model[i]`` of the flattened Sequential;
* any other module is traced with ``torch.fx`` one level deep (its submodules are not
  entered); when its ``forward`` is a chain -- every operation reads the one before it --
  each submodule call is converted the same way (recursively) and each tensor function
  (``torch.flatten``, ``F.relu``, ``x.view(x.size(0), -1)``) becomes one layer;
* a submodule whose ``forward`` is *not* a chain (a residual or inception block), or that
  ``torch.fx`` cannot trace, counts as one layer of type ``block``, as the paper counts
  residual blocks.  Only the top-level module must be a chain: where it is not, a
  ``ValueError`` names the node that joins two paths and says what to do.

torchvision's ``resnet18`` thus becomes ``conv1, bn1, relu, maxpool``, eight basic blocks,
``avgpool, flatten, fc`` (15 layers), and ``vgg11``/``alexnet`` keep their ``features[i]``
indices.  The conversion runs the module once on a random input of ``input_shape`` and
checks that the layer table reproduces the module's output, so a table never silently
computes something else.

The layers are the user's own module objects (not copies): load weights before converting,
or into the returned network.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.fx as fx
from torch import nn
from torch.nn import functional as F

from privacysplit.models.network import Network
from privacysplit.models.spec import LayerSpec

_ACTIVATIONS = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU,
    nn.SiLU, nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Sigmoid, nn.Tanh,
    nn.Softplus, nn.Softsign, nn.LogSigmoid, nn.Tanhshrink, nn.Threshold, nn.Softmax,
    nn.LogSoftmax,
)
_NORMS = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm1d,
    nn.InstanceNorm2d, nn.LocalResponseNorm,
)
_POOLS = (
    nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.LPPool2d,
)
_DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout, nn.FeatureAlphaDropout)
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)

_ACT_FUNCTIONS = {
    F.relu, F.relu_, torch.relu, torch.relu_, F.relu6, F.leaky_relu, F.elu, F.selu, F.gelu,
    F.silu, F.mish, F.hardswish, F.hardsigmoid, F.hardtanh, torch.sigmoid, torch.tanh,
    F.sigmoid, F.tanh, F.softplus, F.softmax, F.log_softmax,
}
_ACT_METHODS = {"relu", "relu_", "sigmoid", "tanh", "softmax", "log_softmax"}
_POOL_FUNCTIONS = {
    F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d, F.lp_pool2d,
}
_DROPOUT_FUNCTIONS = {F.dropout, F.dropout2d, F.alpha_dropout}


@dataclass
class _Layer:
    """One converted layer before its spec is known: the module and where it came from."""

    module: nn.Module
    where: str
    kind: str = "module"  # "module", "opaque" (forced block) or "op" (a traced tensor op)
    op: object = None  # the traced function/method name, for "op" layers


class _OneLevel(fx.Tracer):
    """Trace one module's ``forward`` without entering any of its submodules."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return module_qualified_name != ""


def _is_torch_leaf(module: nn.Module) -> bool:
    """A layer class of ``torch.nn`` itself (not a container): never opened."""
    return type(module).__module__.startswith("torch.nn.") and not isinstance(module, _CONTAINERS)


class _Converter:
    """Walks a module top-down, running it on an example input as it goes.

    ``blocks`` holds the classes that count as one layer: once one instance of a class is
    a block (its ``forward`` branches), every instance is, so MobileNetV2's inverted
    residuals are all blocks whether or not their residual link is active.
    """

    def __init__(self, blocks: set[type] | None = None) -> None:
        self.blocks: set[type] = set(blocks or ())

    def flatten(self, module: nn.Module, x: torch.Tensor, where: str, top: bool) -> tuple[list[_Layer], torch.Tensor]:
        if isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward:
            layers: list[_Layer] = []
            for name, child in module._modules.items():  # named_children() skips repeats
                sub, x = self.flatten(child, x, f"{where}.{name}" if where else name, top=False)
                layers += sub
            return layers, x
        if _is_torch_leaf(module):
            return [_Layer(module, where or type(module).__name__)], _run(module, x, where)
        return self._traced(module, x, where, top)

    def _traced(self, module: nn.Module, x: torch.Tensor, where: str, top: bool) -> tuple[list[_Layer], torch.Tensor]:
        label = where or type(module).__name__
        if not top and type(module) in self.blocks:
            return [_Layer(module, label, "opaque")], _run(module, x, label)
        try:
            graph = _OneLevel().trace(module)
        except Exception as err:  # noqa: BLE001 - any tracing failure means "not a chain here"
            if top:
                raise ValueError(
                    f"torch.fx cannot trace {type(module).__name__}: {type(err).__name__}: "
                    f"{str(err).splitlines()[0] if str(err) else ''}. Pass an nn.Sequential of its "
                    "parts, or move the code that branches on data into an nn.Module of its own "
                    "(a submodule that cannot be traced counts as one layer, a block)"
                ) from err
            self.blocks.add(type(module))
            return [_Layer(module, label, "opaque")], _run(module, x, label)
        gm = fx.GraphModule(module, graph)
        values = _interpret(gm, x, label)
        chain = _chain(graph, values)
        if isinstance(chain, str):
            if top:
                raise ValueError(
                    f"{type(module).__name__} is not a chain of layers: {chain}. Wrap the branching "
                    "part in an nn.Module of its own (it then counts as one layer, a block, as the "
                    "paper counts residual and inception blocks), or pass an nn.Sequential"
                )
            self.blocks.add(type(module))
            return [_Layer(module, label, "opaque")], values[_output_arg(graph)]
        layers: list[_Layer] = []
        prev_value = x
        for node, segment in chain:
            out_value = values[node]
            if node.op == "call_module" and segment == [node]:
                sub = module.get_submodule(str(node.target))
                name = f"{where}.{node.target}" if where else str(node.target)
                part, _ = self.flatten(sub, prev_value, name, top=False)
                layers += part
            else:
                op = node.target if node.op != "call_module" else None
                layers.append(_Layer(_segment_module(module, graph, node, segment), f"{label}:{node.name}", "op", op))
            prev_value = out_value
        return layers, prev_value


def _run(module: nn.Module, x: torch.Tensor, where: str) -> torch.Tensor:
    try:
        y = module(x)
    except Exception as err:  # noqa: BLE001 - say which layer failed on which shape
        raise ValueError(
            f"layer {where} ({type(module).__name__}) fails on an input of shape "
            f"{tuple(x.shape[1:])}: {type(err).__name__}: {err}"
        ) from err
    if not isinstance(y, torch.Tensor):
        raise ValueError(
            f"layer {where} ({type(module).__name__}) returns {type(y).__name__}, not one tensor; "
            "wrap it with the code that picks its output in an nn.Module of its own"
        )
    return y


def _interpret(gm: fx.GraphModule, x: torch.Tensor, label: str) -> dict[fx.Node, object]:
    values: dict[fx.Node, object] = {}

    class Recorder(fx.Interpreter):
        def run_node(self, n: fx.Node):
            out = super().run_node(n)
            values[n] = out
            return out

    try:
        Recorder(gm).run(x)
    except Exception as err:  # noqa: BLE001
        raise ValueError(f"{label} fails on an input of shape {tuple(x.shape[1:])}: {type(err).__name__}: {err}") from err
    return values


def _output_arg(graph: fx.Graph) -> fx.Node:
    return next(n for n in graph.nodes if n.op == "output").args[0]


def _describe(node: fx.Node) -> str:
    if node.op == "call_module":
        return f"call to submodule '{node.target}'"
    if node.op == "call_method":
        return f".{node.target}()"
    if node.op == "placeholder":
        return "the input"
    target = getattr(node.target, "__name__", str(node.target))
    return f"{target}()"


def _chain(graph: fx.Graph, values: dict) -> list[tuple[fx.Node, list[fx.Node]]] | str:
    """The graph as a list of ``(tensor node, nodes of its layer)``, or why it is no chain.

    Tensor-valued operations form the chain; nodes that compute something else from a
    tensor (``x.size(0)``, ``x.shape``) or read a parameter (``get_attr``) join the layer
    of the operation that uses them.
    """
    nodes = list(graph.nodes)
    inputs = [n for n in nodes if n.op == "placeholder"]
    if len(inputs) != 1:
        return f"forward takes {len(inputs)} inputs ({', '.join(n.name for n in inputs)}), not one"

    def is_main(n: fx.Node) -> bool:
        return n.op in ("call_module", "call_function", "call_method") and isinstance(values.get(n), torch.Tensor)

    sources: dict[fx.Node, set[fx.Node]] = {}

    def tensor_sources(n: fx.Node) -> set[fx.Node]:
        """Chain nodes (or the input) that ``n`` reads, looking through helper nodes."""
        if n.op == "placeholder" or is_main(n):
            return {n}
        if n not in sources:
            found: set[fx.Node] = set()
            for a in n.all_input_nodes:
                found |= tensor_sources(a)
            sources[n] = found
        return sources[n]

    chain: list[tuple[fx.Node, list[fx.Node]]] = []
    prev = inputs[0]
    for n in nodes:
        if not is_main(n):
            continue
        read: set[fx.Node] = set()
        for a in n.all_input_nodes:
            read |= tensor_sources(a)
        if read != {prev}:
            names = ", ".join(sorted(f"'{r.name}'" for r in read)) or "no tensor"
            return (
                f"node '{n.name}' ({_describe(n)}) reads {names}, not just the node before it "
                f"('{prev.name}')"
            )
        chain.append((n, [*_helpers(n, is_main), n]))
        prev = n
    out = _output_arg(graph)
    if not isinstance(out, fx.Node) or not isinstance(values.get(out), torch.Tensor):
        return "forward does not return one tensor"
    if tensor_sources(out) != {prev}:
        return f"the output reads {', '.join(sorted(s.name for s in tensor_sources(out)))}, not just the last node ('{prev.name}')"
    if not chain:
        return "forward returns its input unchanged"
    return chain


def _helpers(node: fx.Node, is_main) -> list[fx.Node]:
    """The non-chain nodes ``node`` reads (``x.size(0)``, parameters), in graph order."""
    found: list[fx.Node] = []

    def collect(m: fx.Node) -> None:
        for a in m.all_input_nodes:
            if a.op == "placeholder" or is_main(a) or a in found:
                continue
            collect(a)
            found.append(a)

    collect(node)
    return found


def _segment_module(root: nn.Module, graph: fx.Graph, node: fx.Node, segment: list[fx.Node]) -> fx.GraphModule:
    """A module running ``segment`` (ending in ``node``) on one input: the node before it."""
    new = fx.Graph()
    x = new.placeholder("x")
    env: dict[fx.Node, fx.Node] = {}
    members = set(segment)

    def arg(a: fx.Node) -> fx.Node:
        if a in env:
            return env[a]
        if a not in members:  # the previous chain node
            return x
        env[a] = new.node_copy(a, arg)
        return env[a]

    for m in segment:
        if m not in env:
            env[m] = new.node_copy(m, arg)
    new.output(env[node])
    return fx.GraphModule(root, new, class_name=f"Op_{node.name}")


# ----------------------------------------------------------------------------- specs


def _pair0(value) -> int:
    if isinstance(value, (tuple, list)):
        return int(value[0])
    return int(value)


def _max_kernel(module: nn.Module) -> int:
    kernels = [_pair0(m.kernel_size) for m in module.modules() if isinstance(m, nn.Conv2d)]
    return max(kernels, default=0)


def _spatial_stride(x: tuple[int, ...], y: tuple[int, ...]) -> int:
    if len(x) == 3 and len(y) == 3 and y[1] > 0:
        return max(1, round(x[1] / y[1]))
    return 1 if len(x) == 3 else 0


def _conv_padding(conv: nn.Conv2d) -> int:
    if isinstance(conv.padding, str):
        return 0 if conv.padding == "valid" else _pair0(conv.dilation) * (_pair0(conv.kernel_size) - 1) // 2
    return _pair0(conv.padding)


def _is_flatten(x: torch.Tensor, y: torch.Tensor) -> bool:
    return y.dim() == 2 and y.shape[1] == math.prod(x.shape[1:]) and torch.equal(y, torch.flatten(x, 1))


def _spec(layer: _Layer, x: torch.Tensor, y: torch.Tensor) -> LayerSpec:
    """The searcher's description of one converted layer, from its module and its shapes."""
    m, xs, ys = layer.module, tuple(x.shape[1:]), tuple(y.shape[1:])
    cin, cout = (xs[0] if xs else 1), (ys[0] if ys else 1)
    if layer.kind == "module":
        if isinstance(m, nn.Conv2d):
            return LayerSpec("conv", _pair0(m.kernel_size), _pair0(m.stride), _conv_padding(m), m.in_channels, m.out_channels)
        if isinstance(m, nn.Linear) and x.dim() == 2:
            return LayerSpec("linear", 0, 0, 0, m.in_features, m.out_features)
        if isinstance(m, _ACTIVATIONS):
            return LayerSpec("relu")
        if isinstance(m, _NORMS) and xs == ys:
            return LayerSpec("bn", 0, 0, 0, cin, cout)
        if isinstance(m, _POOLS):
            k = 0 if "Adaptive" in type(m).__name__ else _pair0(m.kernel_size)
            s = 0 if "Adaptive" in type(m).__name__ else _pair0(m.stride or m.kernel_size)
            return LayerSpec("pool", k, s, 0, cin, cout)
        if isinstance(m, (*_DROPOUTS, nn.Identity)):
            return LayerSpec("dropout")
        if isinstance(m, nn.Flatten) and _is_flatten(x, y):
            return LayerSpec("flatten")
    if layer.kind == "op" and not any(True for _ in m.parameters()):
        op = layer.op
        if _is_flatten(x, y):
            return LayerSpec("flatten")
        if xs == ys and (op in _ACT_FUNCTIONS or op in _ACT_METHODS):
            return LayerSpec("relu")
        if op in _POOL_FUNCTIONS:
            return LayerSpec("pool", 0, 0, 0, cin, cout)
        if op in _DROPOUT_FUNCTIONS and xs == ys:
            return LayerSpec("dropout")
    k = _max_kernel(m)
    return LayerSpec("block", k, _spatial_stride(xs, ys), k // 2, cin, cout)


# ----------------------------------------------------------------------------- public


def from_module(
    module: nn.Module,
    input_shape: Sequence[int],
    *,
    name: str | None = None,
    check: bool = True,
) -> Network:
    """The layer table of ``module`` for inputs of ``input_shape`` (no batch dimension).

    Args:
        module: the user's network; an ``nn.Sequential`` or a module ``torch.fx`` traces into
            a chain (see the module docstring).  Its output must be ``(batch, classes)``.
        input_shape: e.g. ``(1, 28, 28)``, ``(3, 64, 64)`` or ``(600,)``.
        name: the network's name in tables and messages (default: the class name).
        check: compare the table's output with ``module``'s on a random input.

    Raises:
        ValueError: naming the node that blocks a chain, a layer that fails on its input, a
            weighted module used twice, or an output that is not ``(batch, classes)``.
    """
    if not isinstance(module, nn.Module):
        raise ValueError(f"expected a torch.nn.Module, got {type(module).__name__}")
    shape = tuple(int(s) for s in input_shape)
    label = name or type(module).__name__.lower()
    x = torch.rand(2, *shape, generator=torch.Generator().manual_seed(0))
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        with torch.no_grad():
            converter = _Converter()
            layers, _ = converter.flatten(module, x, "", top=True)
            known: set[type] = set()
            while converter.blocks != known:  # a class found to be a block later on
                known = set(converter.blocks)
                converter = _Converter(known)
                layers, _ = converter.flatten(module, x, "", top=True)
            if not layers:
                raise ValueError(f"{label} has no layers")
            specs: list[LayerSpec] = []
            h = x
            for layer in layers:
                y = _run(layer.module, h, layer.where)
                specs.append(_spec(layer, h, y))
                h = y
            _check_shared(layers)
            if h.dim() != 2:
                raise ValueError(
                    f"{label} outputs shape {tuple(h.shape[1:])} per input; PrivacySplit trains a "
                    "classifier, so the last layer must give (batch, classes)"
                )
            net = Network(specs, [layer.module for layer in layers], name=label, input_shape=shape,
                          num_classes=int(h.shape[1]))
            if check:
                expected = module(x)
                got = net(x)
                if not torch.allclose(expected, got, rtol=1e-4, atol=1e-5 * (1 + float(expected.abs().max()))):
                    raise ValueError(
                        f"the layer table of {label} does not reproduce its output (max difference "
                        f"{float((expected - got).abs().max()):.3g}); pass an nn.Sequential"
                    )
    finally:
        for m, flag in modes:
            m.training = flag
    return net


def _check_shared(layers: list[_Layer]) -> None:
    seen: dict[int, int] = {}
    for i, layer in enumerate(layers):
        if not any(True for _ in layer.module.parameters()):
            continue
        j = seen.setdefault(id(layer.module), i)
        if j != i:
            raise ValueError(
                f"{layer.where} is used as layers {j} and {i} (shared weights): a split could put "
                "one use on the device and one in the cloud; give each use its own module"
            )


def layer_table(net: Network, input_shape: Sequence[int] | None = None) -> list[dict]:
    """One row per layer: index, type, spec text, output shape and parameter count.

    What ``privacysplit layers`` prints (with the techniques that apply to each layer), so
    a user can write plans for a network they brought.
    """
    shape = tuple(input_shape or net.input_shape)
    rows = []
    was = net.training
    net.eval()
    try:
        with torch.no_grad():
            h = torch.zeros(1, *shape, device=next((p.device for p in net.parameters()), torch.device("cpu")))
            for i, (spec, module) in enumerate(zip(net.layers, net.body, strict=True)):
                h = net.forward_range(h, i, i + 1)
                rows.append({
                    "index": net.offset + i, "type": spec.type, "layer": str(spec),
                    "module": type(module).__name__, "output": tuple(h.shape[1:]),
                    "params": sum(p.numel() for p in module.parameters()),
                })
    finally:
        net.train(was)
    return rows


def fingerprint(net: Network) -> str:
    """A hex digest of a network's structure and weights (for cache keys).

    Covers the layer specs, every module's class and printed form (its hyperparameters,
    and the generated code of traced operations), the input shape, and every parameter and
    buffer, so two networks share a fingerprint only when they compute the same thing.
    """
    h = hashlib.sha256()
    h.update(repr((net.input_shape, net.num_classes, [s.as_tuple() for s in net.layers])).encode())
    for module in net.body:
        h.update(type(module).__qualname__.encode())
        h.update(repr(module).encode())
        if isinstance(module, fx.GraphModule):
            h.update(module.code.encode())
    for key, tensor in net.state_dict().items():
        h.update(key.encode())
        h.update(str(tuple(tensor.shape)).encode())
        h.update(str(tensor.dtype).encode())
        t = tensor.detach().cpu().contiguous()
        if t.dtype == torch.bfloat16:
            t = t.float()
        h.update(t.numpy().tobytes())
    return h.hexdigest()


__all__ = ["fingerprint", "from_module", "layer_table"]
