{{ training_rows('test') }}
