"""engine/train/budget.py: the encoder and A/B stages' resumable, time-budgeted loop."""
import pytest
import torch

from engine.train import budget


class Clock:
    """time.time() that advances 10 s per call: the loop's budget is then counted in calls, not in CPU speed."""

    def __init__(self):
        self.t = 0.0

    def __call__(self):
        self.t += 10.0
        return self.t


def test_runs_to_the_budget_checkpoints_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setattr(budget.time, "time", Clock())
    ck = tmp_path / "stage.pt"
    net = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    parts = {"net": net, "opt": opt}
    assert budget.resume(ck, parts) == (0, 0.0)
    seen, logs = [], []

    def step(it):
        seen.append(it)
        with torch.no_grad():
            net.bias.add_(1.0)
        return f"bias {net.bias.item():.0f}"

    n = budget.train_for(2.0, ck, parts, step, log_every=2, checkpoint_every=1e9, log=logs.append)
    assert n == len(seen) and seen == list(range(n)) and 0 < n <= 12  # 2 minutes of a 10 s-per-call clock
    assert logs[-1] == f"done: {n} iterations" and logs[0].startswith("it 2 min ") and "bias" in logs[0]
    bias = net.bias.item()
    # a new process: fresh objects resume where the checkpoint stopped, and a spent budget runs nothing more
    net2 = torch.nn.Linear(2, 1)
    parts2 = {"net": net2, "opt": torch.optim.SGD(net2.parameters(), lr=0.1)}
    it, spent = budget.resume(ck, parts2)
    assert it == n and spent >= 120.0 and net2.bias.item() == bias
    assert budget.train_for(2.0, ck, parts2, step, it, spent, log=logs.append) == n
    # more minutes: iterations go on from n
    seen.clear()
    budget.train_for(3.0, ck, parts2, step, it, spent, log=logs.append)
    assert seen and seen[0] == n
    assert budget.resume(ck, parts2)[0] == n + len(seen)


def test_follow_checkpoint_reloads_only_when_the_file_changes(tmp_path):
    import os

    ck = tmp_path / "encoder_ckpt.pt"
    src, dst = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    with torch.no_grad():
        src.bias.fill_(1.0)
    torch.save({"E": src.state_dict(), "it": 1}, ck)
    follow = budget.FollowCheckpoint(ck, dst, "E")
    assert float(dst.bias.detach()) == 1.0  # loaded at once
    with torch.no_grad():
        dst.bias.fill_(5.0)
    assert follow.poll() is False and float(dst.bias.detach()) == 5.0  # unchanged file: not reloaded
    with torch.no_grad():
        src.bias.fill_(2.0)
    torch.save({"E": src.state_dict(), "it": 2}, ck)
    st = ck.stat()
    os.utime(ck, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # a later write, even within the clock's tick
    assert follow.poll() is True and float(dst.bias.detach()) == 2.0


def test_weight_average_tracks_and_resumes_from_older_checkpoints(tmp_path):
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    ema = budget.WeightAverage(net, decay=0.5)
    assert not any(p.requires_grad for p in ema.module.parameters())
    with torch.no_grad():
        net[0].bias.fill_(4.0)
    start = ema.module[0].bias.detach().clone()
    ema.update(net)
    assert torch.allclose(ema.module[0].bias, 0.5 * start + 2.0)  # decay * average + (1 - decay) * current
    net[1].num_batches_tracked.fill_(7)
    ema.update(net)
    assert int(ema.module[1].num_batches_tracked) == 7  # integer buffers are copied, not averaged
    # a checkpoint written before averaging existed: the optional part keeps its state
    ck = tmp_path / "old.pt"
    torch.save({"net": net.state_dict(), "it": 3, "spent": 6.0}, ck)
    fresh = budget.WeightAverage(net, decay=0.5)
    assert budget.resume(ck, {"net": net, "net_ema": fresh}, optional=("net_ema",)) == (3, 6.0)
    assert torch.equal(fresh.module[0].bias, net[0].bias)
    budget.save(ck, {"net": net, "net_ema": ema}, 4, 8.0)
    again = budget.WeightAverage(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2)), 0.5)
    budget.resume(ck, {"net_ema": again})
    assert torch.equal(again.module[0].bias, ema.module[0].bias)
    import pytest

    with pytest.raises(KeyError):  # a required part that is missing is an error
        budget.resume(tmp_path / "old.pt", {"other": torch.nn.Linear(1, 1)})


def test_follow_checkpoint_prefers_the_weight_average(tmp_path):
    ck = tmp_path / "encoder_ckpt.pt"
    a, b, dst = torch.nn.Linear(1, 1), torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)
    torch.save({"E": a.state_dict()}, ck)
    budget.FollowCheckpoint(ck, dst, "E")
    assert torch.equal(dst.weight, a.weight)
    torch.save({"E": a.state_dict(), "E_ema": b.state_dict()}, ck)
    budget.FollowCheckpoint(ck, dst, "E")
    assert torch.equal(dst.weight, b.weight)


def test_spent_budget_leaves_the_checkpoint_alone(tmp_path):
    ck = tmp_path / "stage.pt"
    net = torch.nn.Linear(1, 1)
    torch.save({"net": net.state_dict(), "net_ema": net.state_dict(), "it": 5, "spent": 600.0}, ck)
    calls, logs = [], []
    it = budget.train_for(5.0, ck, {"net": net}, lambda i: calls.append(i) or "", it=5, spent=600.0,
                          log=logs.append)
    assert it == 5 and calls == []
    assert "net_ema" in torch.load(ck, weights_only=False)  # not rewritten without the average
    assert logs == ["done already: 5 iterations, 10.0 of 5 min spent"]


def test_set_step_size_overrides_the_resumed_lr_and_adds_the_average(tmp_path):
    ck = tmp_path / "stage.pt"
    net = torch.nn.Linear(1, 1)
    opt = torch.optim.Adam(net.parameters(), 5e-4)
    with torch.no_grad():
        net.bias.fill_(3.0)
    budget.save(ck, {"net": net, "opt": opt}, 2, 60.0)
    fresh = torch.nn.Linear(1, 1)
    fresh_opt = torch.optim.Adam(fresh.parameters(), 1.0)
    parts = {"net": fresh, "opt": fresh_opt}
    budget.resume(ck, parts)
    assert budget.set_step_size(ck, parts, "net", fresh_opt, 2e-4, 0.0) is None and "net_ema" not in parts
    assert fresh_opt.param_groups[0]["lr"] == 2e-4  # not the checkpoint's 5e-4
    avg = budget.set_step_size(ck, parts, "net", fresh_opt, 2e-4, 0.9)
    assert parts["net_ema"] is avg and float(avg.module.bias.detach()) == 3.0  # starts at the resumed weights
    with torch.no_grad():
        avg.module.bias.fill_(7.0)
    budget.save(ck, parts, 3, 70.0)
    parts2 = {"net": torch.nn.Linear(1, 1)}
    budget.resume(ck, parts2)
    avg2 = budget.set_step_size(ck, parts2, "net", torch.optim.Adam(parts2["net"].parameters()), 1e-3, 0.9)
    assert float(avg2.module.bias.detach()) == 7.0  # the checkpoint's average, not the weights
    assert budget.trained_weights(torch.load(ck, weights_only=False), "net")["bias"].item() == 7.0


class _Evil:
    def __reduce__(self):
        return (print, ("unpickled!",))


def test_checkpoints_load_without_unpickling_objects(tmp_path):
    """Training checkpoints hold tensors only (what is not a tensor is JSON): they load with weights_only=True,
    and a checkpoint carrying a pickled object is refused instead of run."""
    from engine.train.gan import META_KEY, load_checkpoint

    ck = tmp_path / "stage.pt"
    net = torch.nn.Linear(2, 1)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    budget.save(ck, {"net": net, "opt": opt}, 7, 42.5)
    raw = torch.load(ck, weights_only=True)
    assert isinstance(raw[META_KEY], str) and "it" not in raw
    loaded = load_checkpoint(ck)
    assert loaded["it"] == 7 and loaded["spent"] == 42.5 and torch.equal(loaded["net"]["weight"], net.weight)
    fresh = {"net": torch.nn.Linear(2, 1), "opt": torch.optim.Adam(torch.nn.Linear(2, 1).parameters())}
    assert budget.resume(ck, fresh) == (7, 42.5)
    bad = tmp_path / "evil.pt"
    torch.save({"net": net.state_dict(), "it": _Evil()}, bad)
    with pytest.raises(Exception, match="(?i)weights only|unpickl|global"):
        load_checkpoint(bad)
