"""probe from Python: rank pairs with no training, fit heads on them, read the records as a DataFrame,
write the leaderboard, and take the best pair home.

Run as ``python examples/python_api.py [RESULTS_DIR]``; the test suite runs it on tiny random-weight
test encoders so it finishes in seconds (swap in real registry names, e.g. "efficientnet/lite0-in1k"
and "sentence-transformers/*", for real numbers).
"""

from __future__ import annotations

import sys
from pathlib import Path

import probe


def main(results: Path) -> None:
    vision, text = ["test/tiny-vit", "test/tiny-vit-wide"], "test/tiny-bert"
    ranking = probe.select(vision, text, top=1, dataset="shapes", k=5, max_pairs=100, n_boot=10,
                           results_dir=results, progress=False)
    print("selected before training:", ranking.selected)
    result = probe.run(vision, text, epochs=2, train="shapes", evals=["shapes-ood"], results_dir=results,
                       progress=False)
    table = result.to_frame()
    print(table[["vision", "text", "benchmark", "alignment/probing_score"]].to_string(index=False))
    pages = probe.write_report(results, results / "reports")
    print("leaderboard:", pages["html"])
    best = max(result.records, key=lambda record: record.metrics["alignment/probing_score"])
    model = probe.AlignedModel.load(results / best.saved_model, device="cpu")
    texts = model.encode_text(["a red circle", "a blue square"])
    print(f"best: {best.vision.name} x {best.text.name}; text embeddings {texts.shape}")
    for scored in probe.evaluate(model, "digits", results_dir=results, progress=False):  # a benchmark it never saw
        print(f"{scored.record.benchmark.label}: probing score {scored.record.metrics['alignment/probing_score']:.3f} "
              f"({scored.outcome})")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("results"))
