"""ecomine: fine-tuned transformer scores for product reviews, batch-written to Delta Lake."""

from __future__ import annotations

__version__ = "0.1.0"
