"""What a person should look at next: suspected label errors (``label_errors``) and the images worth labelling
(``acquire``)."""

HARD_TO_READ = 0.2  # the most a doubted reading's P may be for its crop to be listed apart as hard to read
# a label the model gives less than 1 in 20 a character (geometric mean) is doubted however unsure its own reading is:
# whatever the crop shows, it is not that text (another name, two letters changed), so it stays a suspected error
# instead of going to the hard-to-read list (right labels of crops the starter cannot read kept 0.1-0.9 a character)
UNLIKELY_LABEL_P = 0.05  # per character
