//! A plain command component: not a durable workflow.

fn main() {
    println!("hello");
}
