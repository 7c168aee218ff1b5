"""What a person should look at next: suspected label errors and the images worth labelling."""
