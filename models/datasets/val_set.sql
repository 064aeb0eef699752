{{ training_rows('val') }}
