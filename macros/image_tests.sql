{#- Reusable data tests for image tables. Each returns the rows that break the rule. Each judges a
    row on its own, so it reads new_rows(model): after a pass, only rows written since. -#}

{#- Every image in the column has this height, width and number of channels, and as many bytes of
    pixels as they say. check_bytes=false checks the three numbers only: then only they are read,
    not the pixels (for tables that copy images another test already checked byte by byte). -#}
{% test image_shape(model, column_name, height, width, channels=3, check_bytes=true) %}
select path, {{ column_name }}.height as height, {{ column_name }}.width as width,
       {{ column_name }}.nChannels as channels
from {{ new_rows(model) }}
where {{ column_name }}.height <> {{ height }} or {{ column_name }}.width <> {{ width }}
   or {{ column_name }}.nChannels <> {{ channels }}
   {%- if check_bytes %}
   or length({{ column_name }}.data) <> {{ height }} * {{ width }} * {{ channels }}
   {%- endif %}
{% endtest %}

{#- A float32 tensor holds exactly product(shape) values (4 bytes each). -#}
{% test tensor_matches_shape(model, column_name, shape_column) %}
select path, length({{ column_name }}) as n_bytes, {{ shape_column }} as shape
from {{ new_rows(model) }}
where length({{ column_name }}) <> 4 * aggregate({{ shape_column }}, 1L, (acc, d) -> acc * d)
{% endtest %}

{#- Tensor values are finite and within [min_value, max_value] (a NaN fails the check). -#}
{% test tensor_values_in_range(model, column_name, min_value, max_value) %}
select path, r.min as min_value, r.max as max_value
from (select path, tensor_range({{ column_name }}) as r from {{ new_rows(model) }})
where not (r.min >= {{ min_value }} and r.max <= {{ max_value }})
{% endtest %}

{#- Images of one flat colour (in every channel the smallest value is the largest), judged on the
    image_stats the decoding call computed: often a broken file or a blank scan (use with severity: warn). -#}
{% test not_one_flat_color(model, column_name) %}
select path, {{ column_name }}.min as min_values, {{ column_name }}.max as max_values
from {{ new_rows(model) }}
where {{ column_name }}.min = {{ column_name }}.max
{% endtest %}

{#- Classes with fewer than min_count images (use with severity: warn). -#}
{% test min_rows_per_value(model, column_name, min_count) %}
{{- _check_whole_number('min_rows_per_value', 'min_count', min_count) }}
select {{ column_name }}, count(*) as n_rows
from {{ model }}
group by {{ column_name }}
having count(*) < {{ min_count }}
{% endtest %}

{#- No pair of (near-)duplicate images may sit in two different splits. -#}
{% test pairs_in_same_split(model, splits) %}
select p.path_a, a.split as split_a, p.path_b, b.split as split_b
from {{ model }} p
join {{ splits }} a on a.path = p.path_a
join {{ splits }} b on b.path = p.path_b
where a.split <> b.split
{% endtest %}

{#- A test's whole-number argument, as YAML gives it (10) or as a templated one renders ("10"). -#}
{% macro _check_whole_number(test_name, argument, value) -%}
    {%- if not (value is integer or (value is string and value.strip().isdigit())) -%}
        {{- exceptions.raise_compiler_error("test " ~ test_name ~ ": " ~ argument ~ " must be a whole number, got '"
                                            ~ value ~ "'") -}}
    {%- endif -%}
{%- endmacro %}
