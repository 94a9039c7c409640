"""Voice conversion data: Common Voice releases and a Festival-spoken stand-in."""

from .commonvoice import (
    AGE_VALUES,
    COMMON_VOICE_COLUMNS,
    GENDER_VALUES,
    Clip,
    is_voice_source,
    parse_age,
    parse_gender,
    process_tsv,
    read_common_voice,
    read_labelled_csv,
    read_voice_clips,
    voice_labels,
)
from .festival import (
    TINY_VOICES,
    VOICES,
    FestivalDataset,
    FestivalVoice,
    make_festival_dataset,
)

__all__ = [
    "AGE_VALUES",
    "COMMON_VOICE_COLUMNS",
    "GENDER_VALUES",
    "TINY_VOICES",
    "VOICES",
    "Clip",
    "FestivalDataset",
    "FestivalVoice",
    "is_voice_source",
    "make_festival_dataset",
    "parse_age",
    "parse_gender",
    "process_tsv",
    "read_common_voice",
    "read_labelled_csv",
    "read_voice_clips",
    "voice_labels",
]
