"""What a person should look at next: suspected label errors (``label_errors``) and the images worth labelling
(``acquire``)."""

HARD_TO_READ = 0.2  # a doubted label whose out-of-fold reading has P below this is listed apart as hard to read
