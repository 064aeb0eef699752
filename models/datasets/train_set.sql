-- Training rows: originals (copy_index 0) and their augmented copies.
{{ training_rows('train', with_augmented=true) }}
