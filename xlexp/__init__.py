"""xlexp: experiments for cross-lingual open-ended generation (XL-Instruct)."""

__version__ = "0.1.0"
