{#- The generic data tests every project has. Each returns the failing rows; none means a pass.
    A project may define more, or override these, with {% test name(model, column_name) %} blocks.
    Tests that judge each row on its own read new_rows(model): after a pass, only the rows of
    files written since. -#}

{% test not_null(model, column_name) %}
select * from {{ new_rows(model) }} where {{ column_name }} is null
{% endtest %}

{% test unique(model, column_name) %}
select {{ column_name }} as unique_field, count(*) as n_records
from {{ model }}
where {{ column_name }} is not null
group by {{ column_name }}
having count(*) > 1
{% endtest %}

{% test accepted_values(model, column_name, values, quote=true) %}
select {{ column_name }} as value_field, count(*) as n_records
from {{ new_rows(model) }}
where {{ column_name }} is not null
  and {{ column_name }} not in (
    {%- for value in values -%}
      {%- if quote %}'{{ value | replace("'", "''") }}'{% else %}{{ value }}{% endif %}{{ ", " if not loop.last }}
    {%- endfor -%})
group by {{ column_name }}
{% endtest %}

{% test relationships(model, column_name, to, field) %}
select child.{{ column_name }} as from_field
from {{ model }} as child
left join {{ to }} as parent on child.{{ column_name }} = parent.{{ field }}
where child.{{ column_name }} is not null and parent.{{ field }} is null
{% endtest %}
