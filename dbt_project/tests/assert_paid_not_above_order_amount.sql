-- Singular test: a customer never pays more than the order is worth.
select order_id, amount, paid_amount
from {{ ref('fct_orders') }}
where paid_amount > amount and {{ partition_filter('order_date') }}
