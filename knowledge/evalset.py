"""The evaluation questions (knowledge/eval/*.yml) and their fixed fit/report split.

About 40% of the questions (chosen by a hash of the text, so the split never
changes when questions are added elsewhere) fit the hybrid fusion and the
confidence calibration; the rest are only ever used for reporting.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import yaml

NONE = "none"
FIT_SHARE = 4  # out of 10


@dataclass(frozen=True)
class Question:
    text: str
    article: str  # an article id, or "none"
    language: str
    # knowledge/eval/fit-none: questions no article answers, written to fit the calibration only
    fit_only: bool = False

    @property
    def split(self) -> str:
        if self.fit_only:
            return "fit"
        bucket = (
            int(hashlib.sha1(f"{self.language}:{self.text}".encode(), usedforsecurity=False).hexdigest(), 16)
            % 10
        )
        return "fit" if bucket < FIT_SHARE else "report"

    @property
    def answerable(self) -> bool:
        return self.article != NONE


def load_questions(eval_dir: Path, fit_only: bool = False) -> list[Question]:
    questions: list[Question] = []
    for path in sorted(eval_dir.glob("*.yml")):
        language = path.stem
        data = yaml.safe_load(path.read_text("utf-8")) or {}
        for row in data.get("questions", []):
            questions.append(
                Question(
                    text=str(row["q"]), article=str(row["article"]), language=language, fit_only=fit_only
                )
            )
    return questions


def fitting_questions(eval_dir: Path) -> list[Question]:
    """The fit split, plus the fit-only `none` questions of eval_dir/fit-none (never reported on).

    Some 20 `none` questions per language in the fit split are too few to set the answer bar:
    letting one of them through is already 5%.
    """
    questions = [q for q in load_questions(eval_dir) if q.split == "fit"]
    return questions + load_questions(eval_dir / "fit-none", fit_only=True)
