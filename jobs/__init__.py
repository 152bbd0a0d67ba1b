"""spark-submit entry points. Each module: ``main(argv) -> int`` and ``run(spark, cfg, ...)``."""
