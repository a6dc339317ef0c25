"""Bad input from the command line: one line on stderr naming what is wrong, no traceback, exit status 2,
and nothing written (a bad value is refused before Hydra makes a run folder or anything is built)."""

import json
import sys

import pytest
import torch

from tests.commands import run_all
from tests.conftest import TINY_MODEL

QUIET = ["logger=none", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, chirp_manifests, tiny_checkpoint):
    root = tmp_path_factory.mktemp("bad")
    truncated = root / "truncated.ckpt"
    truncated.write_bytes(tiny_checkpoint.read_bytes()[: tiny_checkpoint.stat().st_size // 2])
    foreign = root / "foreign.ckpt"
    torch.save({"epoch": 3, "weights": torch.zeros(3)}, foreign)  # a checkpoint of another program
    negative = root / "negative.jsonl"
    lines = chirp_manifests["train"].read_text().splitlines()
    row = json.loads(lines[1])
    row["duration"] = -1.5
    negative.write_text("\n".join([lines[0], json.dumps(row), *lines[2:]]) + "\n")
    return {"truncated": truncated, "foreign": foreign, "negative": negative, **chirp_manifests}


def _manifests(files, train=None):
    return ["data=manifest", "data.num_workers=0", f"data.corpus.splits.train={train or files['train']}",
            f"data.corpus.splits.dev={files['dev']}", f"data.corpus.splits.test={files['test']}"]


# (case id, program, arguments(files), text the line must contain, refused before any run folder is made)
CASES = [
    ("type", "train", lambda f: ["model.hidden_size=abc"], "model.hidden_size: 'abc' is not an integer", True),
    ("zero layers", "train", lambda f: ["model.rnn_layers=0"], "model.rnn_layers=0: must be at least 1", True),
    ("epochs", "train", lambda f: ["trainer.max_epochs=-5"], "trainer.max_epochs=-5", True),
    ("precision", "train", lambda f: ["trainer.precision=17"], "trainer.precision=17: must be one of", True),
    ("lr", "train", lambda f: ["optim.lr=0"], "optim.lr=0.0: must be a positive", True),
    ("batch seconds", "train", lambda f: ["data.batch_seconds=-1"], "data.batch_seconds=-1.0", True),
    ("rnn impl", "train", lambda f: ["model.rnn_impl=lstm"], "model.rnn_impl=lstm: must be one of auto, packed, split",
     True),
    ("unknown key", "train", lambda f: ["model.hiden_size=3"], "model.hiden_size: Key 'hiden_size' not in", True),
    ("manifest path", "train", lambda f: _manifests(f, "/nonexistent.jsonl"),
     "data.corpus.splits.train=/nonexistent.jsonl: no such manifest", True),
    ("unset manifest", "train", lambda f: ["data=manifest"], "data.corpus.splits.dev is not set", True),
    ("recipe", "train", lambda f: ["recipe=nosuch"], "Could not find 'recipe/nosuch'", True),
    ("resume path", "train", lambda f: ["resume=/nonexistent.ckpt"], "resume=/nonexistent.ckpt: no such checkpoint",
     True),
    ("resume truncated", "train", lambda f: [*_manifests(f), *TINY_MODEL, *QUIET, f"resume={f['truncated']}"],
     "truncated.ckpt", True),
    ("interval beyond an epoch", "train", lambda f: [*_manifests(f), *TINY_MODEL, *QUIET, "trainer.val_check_interval=50"],
     "trainer.val_check_interval=50: more than the 12 batches of an epoch; set trainer.check_val_every_n_epoch=null",
     False),
    ("negative duration", "train", lambda f: [*_manifests(f, f["negative"]), *TINY_MODEL, *QUIET],
     "negative.jsonl:2: field 'duration' must be a positive number", False),
    ("decode foreign", "decode", lambda f: [str(f["foreign"]), str(f["dev"])], "foreign.ckpt: not an asr checkpoint",
     False),
    ("evaluate foreign", "evaluate", lambda f: [str(f["foreign"]), str(f["dev"])],
     "foreign.ckpt: not an asr checkpoint", False),
    ("decode truncated", "decode", lambda f: [str(f["truncated"]), str(f["dev"])], "truncated.ckpt", False),
]


@pytest.fixture(scope="module")
def outcomes(bad_files, tmp_path_factory) -> dict[str, tuple]:
    """Every case's command run (several at once): its runs folder and the finished process."""
    root, commands, runs = tmp_path_factory.mktemp("cases"), {}, {}
    for i, (case, program, arguments, _, _) in enumerate(CASES):
        runs[case] = root / str(i) / "runs"
        extra = [f"paths.runs_dir={runs[case]}", f"paths.data_dir={root / str(i) / 'data'}"] if program == "train" else []
        commands[case] = [sys.executable, f"scripts/{program}.py", *arguments(bad_files), *extra]
    return {case: (runs[case], done) for case, done in run_all(commands).items()}


@pytest.mark.parametrize("case,program,message,before_run", [(c[0], c[1], *c[3:]) for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_exit_status_2(case, program, message, before_run, outcomes):
    runs, out = outcomes[case]
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(f"{program}.py: error: ")]
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr and "Traceback" not in out.stdout
    assert len(errors) == 1 and message in errors[0], out.stderr[-2000:]
    if before_run:  # refused before Hydra made a run folder: the error is the only output
        assert lines == errors and not runs.exists()
