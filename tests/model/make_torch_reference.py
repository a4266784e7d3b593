#!/usr/bin/python3
"""Writes torch_reference.inc: reference numbers from PyTorch for model_test.

Run with Debian's Python (python3-torch): /usr/bin/python3 make_torch_reference.py
[OUTPUT] (default: torch_reference.inc next to this script). The C++ tests
only read the generated file; they never need torch. ctest
model.torch_reference_regenerates (check_torch_reference.py) regenerates it
and compares it with the committed file.
"""
import os
import sys

import torch

torch.manual_seed(1234)
torch.set_num_threads(1)
out = []


def emit(name, values):
    flat = [float(v) for v in torch.as_tensor(values).flatten().tolist()]
    body = ", ".join(f"{v:.9e}f" for v in flat)
    out.append(f"inline const std::vector<float> {name} = {{{body}}};")


def emit_int(name, values):
    body = ", ".join(str(int(v)) for v in values)
    out.append(f"inline const std::vector<int> {name} = {{{body}}};")


# --- nn.BatchNorm1d on its own: 4 minibatches of different sizes ----------
rows = [5, 4, 6, 3]
features = 3
gamma = torch.tensor([1.5, -0.5, 2.0])
beta = torch.tensor([0.1, 0.2, -0.3])
emit_int("kBnRows", rows)
emit("kBnGamma", gamma)
emit("kBnBeta", beta)
inputs = [torch.randn(m, features) * 3 + 1 for m in rows]
upstream = [torch.randn(m, features) for m in rows]
ema = torch.nn.BatchNorm1d(features, momentum=0.1, eps=1e-5)
cum = torch.nn.BatchNorm1d(features, momentum=None, eps=1e-5)
for bn in (ema, cum):
    with torch.no_grad():
        bn.weight.copy_(gamma)
        bn.bias.copy_(beta)
    bn.train()
for i, (x, g) in enumerate(zip(inputs, upstream)):
    emit(f"kBnX{i}", x)
    emit(f"kBnUpstream{i}", g)
    xi = x.clone().requires_grad_(True)
    ema.zero_grad()
    y = ema(xi)
    (y * g).sum().backward()
    emit(f"kBnOut{i}", y.detach())
    emit(f"kBnGradX{i}", xi.grad)
    emit(f"kBnGradGamma{i}", ema.weight.grad)
    emit(f"kBnGradBeta{i}", ema.bias.grad)
    emit(f"kBnEmaMean{i}", ema.running_mean)
    emit(f"kBnEmaVar{i}", ema.running_var)
    with torch.no_grad():
        cum(x)
    emit(f"kBnCumMean{i}", cum.running_mean)
    emit(f"kBnCumVar{i}", cum.running_var)
ema.eval()
probe = torch.randn(2, features)
emit("kBnEvalX", probe)
emit("kBnEvalOut", ema(probe).detach())

# --- A whole network: Linear(no bias) -> BN -> ReLU -> Linear, 3 steps -----
def network_reference(prefix, make_optimizer):
    torch.manual_seed(99)
    net = torch.nn.Sequential(
        torch.nn.Linear(4, 5, bias=False),
        torch.nn.BatchNorm1d(5, momentum=0.1),
        torch.nn.ReLU(),
        torch.nn.Linear(5, 3),
    )
    emit(f"{prefix}W1", net[0].weight)
    emit(f"{prefix}W2", net[3].weight)
    emit(f"{prefix}B2", net[3].bias)
    opt = make_optimizer(net.parameters())
    losses = []
    for step in range(3):
        x = torch.randn(8, 4)
        labels = torch.randint(0, 3, (8,))
        emit(f"{prefix}X{step}", x)
        emit_int(f"{prefix}Labels{step}", labels.tolist())
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x), labels)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    emit(f"{prefix}Losses", losses)
    emit(f"{prefix}W1After", net[0].weight)
    emit(f"{prefix}GammaAfter", net[1].weight)
    emit(f"{prefix}BetaAfter", net[1].bias)
    emit(f"{prefix}RunMeanAfter", net[1].running_mean)
    emit(f"{prefix}RunVarAfter", net[1].running_var)
    emit(f"{prefix}W2After", net[3].weight)
    emit(f"{prefix}B2After", net[3].bias)


network_reference(
    "kSgd",
    lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-3))
network_reference(
    "kAdam", lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=1e-3))

# ===========================================================================
# Convolutional networks and input normalization (issue 13). Each section
# below reseeds, so the numbers above do not depend on it.
# ===========================================================================
F = torch.nn.functional


def emit_model(prefix, net):
    """Emits every parameter of `net` as {prefix}P{i} in parameters() order."""
    for i, p in enumerate(net.parameters()):
        emit(f"{prefix}P{i}", p)


def emit_grads(prefix, net):
    for i, p in enumerate(net.parameters()):
        emit(f"{prefix}G{i}", p.grad)


def batch_norms(net):
    return [m for m in net.modules()
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d))]


def randomize_bn_affine(net):
    with torch.no_grad():
        for bn in batch_norms(net):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.3, 0.3)


def exact_recalibration(net, x):
    """bnserve's exact recalibration: for each batch norm in order, the
    per-channel population mean and unbiased variance (n = N*H*W - 1) of its
    input over all of `x`, computed in eval mode with the earlier batch norms
    already recalibrated. Statistics accumulated in float64."""
    net.eval()
    layers = list(net)
    with torch.no_grad():
        for i, layer in enumerate(layers):
            if not isinstance(layer, (torch.nn.BatchNorm1d,
                                      torch.nn.BatchNorm2d)):
                continue
            z = x
            for prev in layers[:i]:
                z = prev(z)
            z = z.double()
            if z.dim() == 4:  # N, C, H, W -> values per channel
                z = z.transpose(0, 1).reshape(z.shape[1], -1)
            else:
                z = z.transpose(0, 1)
            layer.running_mean.copy_(z.mean(dim=1).float())
            layer.running_var.copy_(z.var(dim=1, unbiased=True).float())


# --- A CNN on 2x7x7 images --------------------------------------------------
# conv 3x3 s1 p1 (no bias) -> BN2d -> relu -> maxpool 2 (7 -> 3, floor) ->
# conv 2x2 s2 p1 (bias) -> BN2d -> relu -> avgpool 2 s1 p1 (2 -> 3,
# count_include_pad) -> flatten -> linear 45 -> 3.
def make_cnn(momentum):
    return torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, stride=1, padding=1, bias=False),
        torch.nn.BatchNorm2d(4, momentum=momentum),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(4, 5, 2, stride=2, padding=1, bias=True),
        torch.nn.BatchNorm2d(5, momentum=momentum),
        torch.nn.ReLU(),
        torch.nn.AvgPool2d(2, stride=1, padding=1),
        torch.nn.Flatten(),
        torch.nn.Linear(45, 3),
    )


torch.manual_seed(1313)
cnn = make_cnn(0.1)
randomize_bn_affine(cnn)
cnn_cum = make_cnn(None)
cnn_cum.load_state_dict(cnn.state_dict())
emit_model("kCnn", cnn)
cnn_rows = 6
cnn_batches = [torch.randn(cnn_rows, 2, 7, 7) * 1.5 + 0.3 for _ in range(3)]
cnn_labels = [torch.randint(0, 3, (cnn_rows,)) for _ in range(3)]
for step in range(3):
    emit(f"kCnnX{step}", cnn_batches[step])
    emit_int(f"kCnnLabels{step}", cnn_labels[step].tolist())
# Train-mode forward and backward of the first minibatch, before any update.
cnn.train()
probe_net = make_cnn(0.1)
probe_net.load_state_dict(cnn.state_dict())
probe_net.train()
logits = probe_net(cnn_batches[0])
loss = F.cross_entropy(logits, cnn_labels[0])
loss.backward()
emit("kCnnTrainLogits0", logits.detach())
emit("kCnnTrainLoss0", [loss.item()])
emit_grads("kCnn", probe_net)
# Three SGD steps, EMA (momentum 0.1) and cumulative (momentum=None).
for prefix, net in (("kCnnEma", cnn), ("kCnnCum", cnn_cum)):
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    net.train()
    losses = []
    for step in range(3):
        opt.zero_grad()
        loss = F.cross_entropy(net(cnn_batches[step]), cnn_labels[step])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    emit(f"{prefix}Losses", losses)
    emit_model(f"{prefix}After", net)
    for j, bn in enumerate(batch_norms(net)):
        emit(f"{prefix}RunMean{j}", bn.running_mean)
        emit(f"{prefix}RunVar{j}", bn.running_var)
cnn.eval()
cnn_probe = torch.randn(4, 2, 7, 7) * 1.5 + 0.3
emit("kCnnEvalX", cnn_probe)
with torch.no_grad():
    emit("kCnnEvalOut", cnn(cnn_probe))
# Exact recalibration of the EMA-trained network over 20 examples.
cnn_recal = torch.randn(20, 2, 7, 7) * 2.0 - 0.5
emit("kCnnRecalX", cnn_recal)
exact_recalibration(cnn, cnn_recal)
for j, bn in enumerate(batch_norms(cnn)):
    emit(f"kCnnRecalMean{j}", bn.running_mean)
    emit(f"kCnnRecalVar{j}", bn.running_var)
with torch.no_grad():
    emit("kCnnRecalEvalOut", cnn(cnn_probe))


# --- Input normalization ------------------------------------------------------
def train_three_steps(prefix, net, xs, labels, loss_fn=None):
    """Three SGD steps; `labels` are class ids (cross-entropy) or, with
    loss_fn=F.mse_loss, regression targets."""
    loss_fn = loss_fn or F.cross_entropy
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    net.train()
    losses = []
    for step in range(3):
        opt.zero_grad()
        out = net(xs[step])
        loss = loss_fn(out, labels[step])
        if step == 0:
            emit(f"{prefix}TrainLogits0", out.detach())
        loss.backward()
        if step == 0:
            emit_grads(prefix, net)
        opt.step()
        losses.append(loss.item())
    emit(f"{prefix}Losses", losses)
    emit_model(f"{prefix}After", net)
    for j, bn in enumerate(batch_norms(net)):
        emit(f"{prefix}RunMean{j}", bn.running_mean)
        emit(f"{prefix}RunVar{j}", bn.running_var)


# BatchNorm1d over 5 raw features of very different scales, then the
# hidden-layer shorthand's Linear(no bias) -> BN -> relu -> Linear.
torch.manual_seed(1414)
scales = torch.tensor([1.0, 10.0, 100.0, 0.1, 1000.0])
offsets = torch.tensor([0.0, -50.0, 300.0, 1.0, 2000.0])
inorm = torch.nn.Sequential(
    torch.nn.BatchNorm1d(5),
    torch.nn.Linear(5, 6, bias=False),
    torch.nn.BatchNorm1d(6),
    torch.nn.ReLU(),
    torch.nn.Linear(6, 3),
)
randomize_bn_affine(inorm)
emit_model("kInNorm", inorm)
xs = [torch.randn(8, 5) * scales + offsets for _ in range(3)]
labels = [torch.randint(0, 3, (8,)) for _ in range(3)]
for step in range(3):
    emit(f"kInNormX{step}", xs[step])
    emit_int(f"kInNormLabels{step}", labels[step].tolist())
train_three_steps("kInNorm", inorm, xs, labels)
inorm.eval()
probe = torch.randn(4, 5) * scales + offsets
emit("kInNormEvalX", probe)
with torch.no_grad():
    emit("kInNormEvalOut", inorm(probe))
inorm_recal = torch.randn(30, 5) * scales + offsets
emit("kInNormRecalX", inorm_recal)
exact_recalibration(inorm, inorm_recal)
for j, bn in enumerate(batch_norms(inorm)):
    emit(f"kInNormRecalMean{j}", bn.running_mean)
    emit(f"kInNormRecalVar{j}", bn.running_var)
with torch.no_grad():
    emit("kInNormRecalEvalOut", inorm(probe))

# BatchNorm2d first over raw 2x5x5 images -> conv 3x3 (no padding, no bias)
# -> BN2d -> relu -> flatten -> linear 27 -> 2.
torch.manual_seed(1515)
img_scale = torch.tensor([20.0, 0.05]).view(1, 2, 1, 1)
img_offset = torch.tensor([100.0, -3.0]).view(1, 2, 1, 1)
inorm2d = torch.nn.Sequential(
    torch.nn.BatchNorm2d(2),
    torch.nn.Conv2d(2, 3, 3, bias=False),
    torch.nn.BatchNorm2d(3),
    torch.nn.ReLU(),
    torch.nn.Flatten(),
    torch.nn.Linear(27, 2),
)
randomize_bn_affine(inorm2d)
emit_model("kInNorm2d", inorm2d)
xs = [torch.randn(5, 2, 5, 5) * img_scale + img_offset for _ in range(3)]
labels = [torch.randint(0, 2, (5,)) for _ in range(3)]
for step in range(3):
    emit(f"kInNorm2dX{step}", xs[step])
    emit_int(f"kInNorm2dLabels{step}", labels[step].tolist())
train_three_steps("kInNorm2d", inorm2d, xs, labels)
inorm2d.eval()
probe = torch.randn(3, 2, 5, 5) * img_scale + img_offset
emit("kInNorm2dEvalX", probe)
with torch.no_grad():
    emit("kInNorm2dEvalOut", inorm2d(probe))
inorm2d_recal = torch.randn(12, 2, 5, 5) * img_scale + img_offset
emit("kInNorm2dRecalX", inorm2d_recal)
exact_recalibration(inorm2d, inorm2d_recal)
for j, bn in enumerate(batch_norms(inorm2d)):
    emit(f"kInNorm2dRecalMean{j}", bn.running_mean)
    emit(f"kInNorm2dRecalVar{j}", bn.running_var)
with torch.no_grad():
    emit("kInNorm2dRecalEvalOut", inorm2d(probe))

# --- MLPs: every activation, both heads, stacked batch norms (issue 20) ------
# The hidden-layer shorthand: Linear(no bias) -> BN -> act, twice, then
# Linear. Computed in float64, so the reference is exact far below the
# float32 tolerance the C++ tests use; gradients of minibatch 0 and the
# parameters after 3 SGD steps. Classification (cross-entropy) for every
# activation, regression (MSE, the mean over rows and outputs) for two.
MLP_ACTIVATIONS = {"Relu": torch.nn.ReLU, "Tanh": torch.nn.Tanh,
                   "Sigmoid": torch.nn.Sigmoid, "Identity": torch.nn.Identity}


def mlp_case(prefix, activation, regression, seed):
    torch.manual_seed(seed)
    act = MLP_ACTIVATIONS[activation]
    net = torch.nn.Sequential(
        torch.nn.Linear(4, 6, bias=False), torch.nn.BatchNorm1d(6), act(),
        torch.nn.Linear(6, 5, bias=False), torch.nn.BatchNorm1d(5), act(),
        torch.nn.Linear(5, 3)).double()
    randomize_bn_affine(net)
    emit_model(prefix, net)
    xs = [torch.randn(7, 4, dtype=torch.float64) * 2 + 0.5 for _ in range(3)]
    if regression:
        ys = [torch.randn(7, 3, dtype=torch.float64) for _ in range(3)]
    else:
        ys = [torch.randint(0, 3, (7,)) for _ in range(3)]
    for step in range(3):
        emit(f"{prefix}X{step}", xs[step])
        if regression:
            emit(f"{prefix}Y{step}", ys[step])
        else:
            emit_int(f"{prefix}Labels{step}", ys[step].tolist())
    train_three_steps(prefix, net, xs, ys,
                      F.mse_loss if regression else F.cross_entropy)


for k, name in enumerate(MLP_ACTIVATIONS):
    mlp_case(f"kMlp{name}", name, False, 2000 + k)
mlp_case("kMlpTanhMse", "Tanh", True, 2100)
mlp_case("kMlpSigmoidMse", "Sigmoid", True, 2101)

path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "torch_reference.inc")
with open(path, "w") as f:
    f.write("// Generated by make_torch_reference.py with PyTorch "
            f"{torch.__version__}. Do not edit.\n")
    f.write("// clang-format off\n")
    f.write("\n".join(out))
    f.write("\n// clang-format on\n")
print("wrote", path)
