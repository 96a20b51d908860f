{# Restrict a daily model to the partition days Dagster asked for (all days by default). #}
{% macro partition_filter(column) -%}
    {{ column }} between cast('{{ var("min_date") }}' as date) and cast('{{ var("max_date") }}' as date)
{%- endmacro %}
