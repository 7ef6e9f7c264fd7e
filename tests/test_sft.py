"""LoRA SFT (xlexp.sft): subset choice, completion-only labels, learning, adapter round trip,
and resume after a SIGKILL. All on the tiny random Llama, CPU."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from xlexp.config import SFTConfig
from xlexp.sft import build_trainer, fit, take, to_prompt_completion, train_lora
from xlexp.sft.train import use_bf16

REPO = Path(__file__).resolve().parents[1]
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def make_rows(n: int) -> list[dict]:
    """Rows shaped like the SFT dataset; prompts and answers of varied length."""
    rows = []
    for i in range(n):
        rows.append(
            {
                "id": f"row-{i:03d}",
                "lang": "deu",
                "seed_id": f"seed-{i}",
                "qe_score": round(0.1 + 0.8 * ((i * 37) % n) / n, 4),
                "messages": [
                    {
                        "role": "user",
                        "content": f"Question {i}: what do bees make?"
                        + " Respond in German." * (i % 3),
                    },
                    {
                        "role": "assistant",
                        "content": f"Bees make honey {i}." + " Honey keeps for years." * (i % 4),
                    },
                ],
            }
        )
    return rows


# ---------------------------------------------------------------- (d) subset choice, pure


def test_take_top_is_ordered_by_qe_and_deterministic() -> None:
    rows = make_rows(20)
    rows[5]["qe_score"] = rows[6]["qe_score"] = 0.99  # a tie: broken by id
    top = take(rows, 5, "top")
    assert [r["id"] for r in top[:2]] == ["row-005", "row-006"]
    scores = [r["qe_score"] for r in top]
    assert scores == sorted(scores, reverse=True)
    assert min(scores) >= max(r["qe_score"] for r in rows if r not in top)
    assert take(list(reversed(rows)), 5, "top") == top  # input order does not matter


def test_take_random_is_seeded() -> None:
    rows = make_rows(30)
    a = take(rows, 10, "random", seed=1)
    assert len(a) == 10 and len({r["id"] for r in a}) == 10
    assert take(list(reversed(rows)), 10, "random", seed=1) == a
    assert take(rows, 10, "random", seed=2) != a
    assert [r["id"] for r in a] == sorted(r["id"] for r in a)


def test_take_too_many_names_data_size() -> None:
    with pytest.raises(ValueError, match=r"^data_size:.*holds 4"):
        take(make_rows(4), 5)
    with pytest.raises(ValueError, match="sft.subset"):
        take(make_rows(4), 2, "best")


def test_prompt_completion_format_and_bf16_switch() -> None:
    rows = make_rows(2)
    rows[1]["messages"].insert(0, {"role": "system", "content": "Be brief."})
    pc = to_prompt_completion(rows)
    assert pc[1]["prompt"] == rows[1]["messages"][:2]
    assert pc[1]["completion"] == [rows[1]["messages"][-1]]
    with pytest.raises(ValueError, match="assistant"):
        to_prompt_completion([{"id": "x", "messages": [{"role": "user", "content": "hi"}]}])
    assert use_bf16("auto") == (torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    assert use_bf16("false") is False and use_bf16(True) is True
    with pytest.raises(ValueError, match="sft.bf16"):
        use_bf16("maybe")


# ---------------------------------------------------------------- (b) labels: completion only


def test_collated_labels_cover_completion_only(tiny_model_dir: Path, tmp_path: Path) -> None:
    rows = make_rows(6)
    trainer = build_trainer(rows, tiny_model_dir, SFTConfig(batch_size=6), tmp_path)
    tok = trainer.processing_class
    answers = {r["messages"][-1]["content"] + "<|im_end|>\n" for r in rows}
    batch = next(iter(trainer.get_train_dataloader()))  # the real collated batch
    assert batch["input_ids"].shape[0] == 6
    seen = set()
    for ids, labels, mask in zip(
        batch["input_ids"], batch["labels"], batch["attention_mask"], strict=True
    ):
        ids, labels, mask = ids.tolist(), labels.tolist(), mask.tolist()
        start = next(i for i, x in enumerate(labels) if x != -100)
        end = sum(mask)  # right padding
        assert start > 0
        assert all(x == -100 for x in labels[:start])  # the whole prompt is masked
        assert labels[start:end] == ids[start:end]  # every completion token is trained
        assert all(x == -100 for x in labels[end:])  # padding is masked
        assert tok.decode(ids[:start]).endswith("<|im_start|>assistant\n")
        seen.add(tok.decode(labels[start:end]))
    assert seen == answers


# ---------------------------------------------------------------- (a) learning + done-shortcut


def test_loss_falls_on_a_memorisable_set(tiny_model_dir: Path, tmp_path: Path) -> None:
    sft = OmegaConf.structured(
        SFTConfig(
            r=16,
            alpha=32,
            dropout=0.0,
            target_modules=ALL_LINEAR,
            epochs=8,
            lr=1e-2,
            warmup_ratio=0.0,
            batch_size=4,
            save_steps=1000,
        )
    )
    out = tmp_path / "run"
    metrics = train_lora(make_rows(8), tiny_model_dir, sft, out)
    assert metrics["steps"] == 16 and metrics["resumed_from_step"] == 0
    history = metrics["loss_history"]
    assert [h["step"] for h in history] == list(range(1, 17))
    # LoRA cannot grow the random tiny model's logit scale much (lm_head is frozen, its weights
    # are ~N(0, 0.02)), so the loss floor is near 5 nats; the answers are still learnt.
    assert history[-1]["loss"] < history[0]["loss"] - 0.5, [h["loss"] for h in history]
    assert history[-1]["mean_token_accuracy"] > history[0]["mean_token_accuracy"] + 0.3
    assert metrics["tokens_seen"] > 0 and metrics["train_tokens_per_s"] > 0
    assert metrics["bf16"] is use_bf16("auto")  # fp32 here, bf16 on a CUDA GPU
    assert json.loads((out / "metrics.json").read_text()) == metrics
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json"):
        assert (out / "adapter" / name).exists()
    config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert config["r"] == 16 and set(config["target_modules"]) == set(ALL_LINEAR)
    # A finished run is not trained again.
    stamp = (out / "adapter" / "adapter_model.safetensors").stat().st_mtime_ns
    assert train_lora(make_rows(8), tiny_model_dir, sft, out) == metrics
    assert (out / "adapter" / "adapter_model.safetensors").stat().st_mtime_ns == stamp


# ---------------------------------------------------------------- (c) adapter round trip


def test_saved_adapter_reproduces_trained_logits(tiny_model_dir: Path, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    sft = SFTConfig(epochs=2, lr=1e-2, batch_size=4, save_steps=1000)
    trainer = build_trainer(make_rows(8), tiny_model_dir, sft, tmp_path)
    fit(trainer, tmp_path)
    tok = trainer.processing_class
    # Same device and dtype as training used (fp32 on CPU; bf16 base + fp32 LoRA on CUDA).
    device, dtype = trainer.model.device, trainer.model.get_base_model().dtype
    ids = tok.apply_chat_template(
        make_rows(1)[0]["messages"], return_tensors="pt", return_dict=False
    ).to(device)
    trainer.model.eval()
    with torch.no_grad():
        trained = trainer.model(input_ids=ids).logits
        base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=dtype).to(device)
        plain = base(input_ids=ids).logits
        reloaded = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
        again = reloaded(input_ids=ids).logits
    assert (trained - plain).abs().max() > 1e-3  # the adapter changed the model
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    torch.testing.assert_close(again, trained, atol=tol, rtol=tol)


# ---------------------------------------------------------------- (e) SIGKILL, rerun resumes

_SCRIPT = """
import json, sys
from pathlib import Path
from xlexp.config import SFTConfig
from xlexp.sft import train_lora
rows = json.loads(Path(sys.argv[1]).read_text())
sft = SFTConfig(epochs=5, lr=1e-3, batch_size=1, save_steps=1)
train_lora(rows, sys.argv[2], sft, Path(sys.argv[3]))
"""


@pytest.mark.slow  # a whole run, killed and resumed: the slow lane
def test_killed_run_resumes_from_checkpoint(tiny_model_dir: Path, tmp_path: Path) -> None:
    rows_file, out = tmp_path / "rows.json", tmp_path / "out"
    rows_file.write_text(json.dumps(make_rows(8)))
    cmd = [sys.executable, "-c", _SCRIPT, str(rows_file), str(tiny_model_dir), str(out)]
    # WANDB_DISABLED only skips TRL's eager `import wandb` (4-5 s per process).
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_DISABLED": "true"}
    first = subprocess.Popen(
        cmd, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    # Generous: importing torch/transformers/TRL in a fresh process takes minutes of wall time
    # on a loaded 2-core machine (60 s was too little there).
    deadline = time.monotonic() + 600
    while not (out / "checkpoints" / "checkpoint-2").exists():
        assert first.poll() is None, "training ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert not (out / "adapter").exists() and not (out / "metrics.json").exists()

    second = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    total = 40  # 8 rows x 5 epochs, batch 1
    assert metrics["steps"] == total
    assert metrics["resumed_from_step"] >= 1
    # One history over both runs: every step logged once, in order.
    assert [h["step"] for h in metrics["loss_history"]] == list(range(1, total + 1))
    # The second run trained only the steps left: Trainer prints one log line per step it ran.
    printed = (second.stdout + second.stderr).count("'loss':")
    assert printed == total - metrics["resumed_from_step"]
    assert (out / "adapter" / "adapter_model.safetensors").exists()
    kept = sorted((out / "checkpoints").glob("checkpoint-*"))
    assert 1 <= len(kept) <= 2


def test_base_model_without_template_trains_with_the_card_template(tmp_path, tiny_model_dir):
    """Base models (EuroLLM-9B, Qwen2.5-7B) ship no chat template; the card's is used."""
    import shutil as sh

    from transformers import AutoTokenizer

    bare = tmp_path / "bare"
    sh.copytree(tiny_model_dir, bare)
    tok = AutoTokenizer.from_pretrained(bare)
    tok.chat_template = None
    tok.save_pretrained(bare)
    (bare / "chat_template.jinja").unlink(missing_ok=True)
    rows = [
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hallo"}]}
    ]
    with pytest.raises(ValueError, match="chat_template"):
        build_trainer(rows, bare, SFTConfig(batch_size=1), tmp_path / "a")
    template = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
    trainer = build_trainer(
        rows, bare, SFTConfig(batch_size=1), tmp_path / "b", chat_template=template
    )
    assert trainer.processing_class.chat_template == template
