"""What a person should look at next: suspected label errors (``label_errors``) and the images worth labelling
(``acquire``)."""

HARD_TO_READ = 0.2  # the most a doubted reading's P may be for its crop to be listed apart as hard to read
