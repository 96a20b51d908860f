{{ config(materialized='incremental', incremental_strategy='replace_window', unique_key='order_date',
          tags=['daily']) }}

select
    order_date,
    count(*) as orders,
    count(*) filter (where is_revenue) as revenue_orders,
    coalesce(sum(amount) filter (where is_revenue), 0) as revenue,
    coalesce(sum(paid_amount), 0) as paid
from {{ ref('fct_orders') }}
where {{ partition_filter('order_date') }}
group by order_date
