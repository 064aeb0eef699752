{#- A file's label is the first folder under the images folder: <images_path>/<label>/.../<file>.
    A file directly in the images folder has no label (NULL): it is kept, but not trained on. -#}
{% macro label_from_path(relative_path) -%}
    case when instr({{ relative_path }}, '/') > 0 then substring_index({{ relative_path }}, '/', 1) end
{%- endmacro %}
