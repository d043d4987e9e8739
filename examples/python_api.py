"""probe from Python: fit heads on two pairs, read the records as a DataFrame, take the best pair home.

Run as ``python examples/python_api.py [RESULTS_DIR]``; the test suite runs it on tiny random-weight
test encoders so it finishes in seconds (swap in real registry names, e.g. "efficientnet/lite0-in1k"
and "sentence-transformers/*", for real numbers).
"""

from __future__ import annotations

import sys
from pathlib import Path

import probe


def main(results: Path) -> None:
    result = probe.run(["test/tiny-vit", "test/tiny-vit-wide"], "test/tiny-bert", epochs=2,
                       train="shapes", evals=["shapes-ood"], results_dir=results, progress=False)
    table = result.to_frame()
    print(table[["vision", "text", "benchmark", "alignment/probing_score"]].to_string(index=False))
    best = max(result.records, key=lambda record: record.metrics["alignment/probing_score"])
    model = probe.AlignedModel.load(results / best.saved_model, device="cpu")
    texts = model.encode_text(["a red circle", "a blue square"])
    print(f"best: {best.vision.name} x {best.text.name}; text embeddings {texts.shape}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("results"))
