"""nanoGPT's train.py loop, reduced to one CPU process, for replay's adapter test.

The order of everything that draws from the global generator is train.py's: manual_seed(1337),
the model's initialisation, the first batch, then per iteration estimate_loss (every
eval_interval) and one prefetched batch per micro-step; ckpt.pt saved at the top of the loop
(copied to ckpt_<iter>.pt); `iter N: loss X` printed with the last micro-batch's loss × gas.
`record` (a list) receives each iteration's window offsets.
"""
import math
import os
import shutil
import time

import numpy as np
import torch

from model import GPT, GPTConfig


def train(out_dir, data_dir, config, record=None):
    c = dict(config)
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(1337)
    block, bs, gas = c["block_size"], c["batch_size"], c["gradient_accumulation_steps"]
    train_data = np.memmap(os.path.join(data_dir, "train.bin"), dtype=np.uint16, mode="r")
    val_data = np.memmap(os.path.join(data_dir, "val.bin"), dtype=np.uint16, mode="r")
    offsets = []

    def get_batch(split):
        data = train_data if split == "train" else val_data
        ix = torch.randint(len(data) - block, (bs,))
        if split == "train":
            offsets.append(ix.tolist())
        x = torch.stack([torch.from_numpy(data[i:i + block].astype(np.int64)) for i in ix])
        y = torch.stack([torch.from_numpy(data[i + 1:i + 1 + block].astype(np.int64)) for i in ix])
        return x, y

    model_args = dict(n_layer=c["n_layer"], n_head=c["n_head"], n_embd=c["n_embd"],
                      block_size=block, bias=True, vocab_size=256, dropout=0.0)
    model = GPT(GPTConfig(**model_args))
    optimizer = model.configure_optimizers(c["weight_decay"], c["learning_rate"],
                                           (c["beta1"], c["beta2"]), "cpu")

    def get_lr(it):
        if it < c["warmup_iters"]:
            return c["learning_rate"] * (it + 1) / (c["warmup_iters"] + 1)
        if it > c["lr_decay_iters"]:
            return c["min_lr"]
        ratio = (it - c["warmup_iters"]) / (c["lr_decay_iters"] - c["warmup_iters"])
        return c["min_lr"] + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (c["learning_rate"] - c["min_lr"])

    @torch.no_grad()
    def estimate_loss():
        model.eval()
        out = {}
        for split in ("train", "val"):
            losses = [model(*get_batch(split))[1].item() for _ in range(c["eval_iters"])]
            out[split] = sum(losses) / len(losses)
        model.train()
        return out

    lines = []
    X, Y = get_batch("train")
    iter_num = 0
    while True:
        lr = get_lr(iter_num)
        for g in optimizer.param_groups:
            g["lr"] = lr
        if iter_num % c["eval_interval"] == 0:
            n_before = len(offsets)
            losses = estimate_loss()
            del offsets[n_before:]  # eval batches are not training batches
            lines.append(f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
            if iter_num > 0:
                ckpt = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "model_args": model_args, "iter_num": iter_num, "best_val_loss": 0.0,
                        "config": c}
                lines.append(f"saving checkpoint to {out_dir}")
                torch.save(ckpt, os.path.join(out_dir, "ckpt.pt"))
                shutil.copy(os.path.join(out_dir, "ckpt.pt"),
                            os.path.join(out_dir, f"ckpt_{iter_num}.pt"))
        t0 = time.time()
        used = []
        for _ in range(gas):
            used.append(offsets[-1])
            _, loss = model(X, Y)
            loss = loss / gas
            X, Y = get_batch("train")
            loss.backward()
        if record is not None:
            record.append([o for m in used for o in m])
        torch.nn.utils.clip_grad_norm_(model.parameters(), c["grad_clip"])
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        lossf = loss.item() * gas
        lines.append(f"iter {iter_num}: loss {lossf:.4f}, time {1000 * (time.time() - t0):.2f}ms, mfu -100.00%")
        iter_num += 1
        if iter_num > c["max_iters"]:
            break
    with open(os.path.join(out_dir, "train.log"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return os.path.join(out_dir, "train.log")
