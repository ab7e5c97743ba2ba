//! Hello, durable: a workflow of two steps.
//!
//! Input `{"name": "Ada"}`. Step `greet` makes a greeting, step
//! `count_letters` counts its letters; the workflow returns both. Each step's result is
//! committed before the workflow goes on: kill the process between the two
//! and `durable resume` runs only `count_letters`.

use durable_sdk::{Error, step};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Hello {
    name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Greeting {
    greeting: String,
    letters: usize,
}

/// A step: a plain function from one serde value to a `Result` of another.
fn greet(hello: Hello) -> Result<String, String> {
    if hello.name.trim().is_empty() {
        return Err("a name is needed".into());
    }
    Ok(format!("Hello, {}!", hello.name.trim()))
}

fn count_letters(text: String) -> Result<usize, String> {
    Ok(text.chars().filter(|c| c.is_alphabetic()).count())
}

/// The workflow: calls steps durably (recorded, never run again once
/// committed) and returns the run's output.
fn hello(input: Hello) -> Result<Greeting, Error> {
    let greeting = step!(greet).call(&input)?;
    let letters = step!(count_letters).call(&greeting)?;
    Ok(Greeting { greeting, letters })
}

durable_sdk::workflow!(run: hello, steps: [greet, count_letters]);

#[cfg(test)]
mod tests {
    use super::*;
    use durable_sdk::testing::Fake;

    #[test]
    fn step_bodies_are_plain_functions() {
        let ada = Hello {
            name: " Ada ".into(),
        };
        assert_eq!(greet(ada).unwrap(), "Hello, Ada!");
        assert_eq!(count_letters("Hello, Ada!".into()).unwrap(), 8);
        assert!(greet(Hello { name: "".into() }).is_err());
    }

    #[test]
    fn the_workflow_runs_against_a_fake_host() {
        // `greet` runs its body; `count_letters`'s answer is recorded.
        let mut fake = Fake::new(DURABLE_STEPS).answer("count_letters", 3);
        let out = fake.run(|| hello(Hello { name: "Ada".into() })).unwrap();
        assert_eq!(
            out,
            Greeting {
                greeting: "Hello, Ada!".into(),
                letters: 3
            }
        );
        assert_eq!(fake.calls_of("step"), ["greet", "count_letters"]);
    }

    #[test]
    fn a_failed_step_fails_the_workflow() {
        let mut fake = Fake::new(DURABLE_STEPS);
        let err = fake.run(|| hello(Hello { name: " ".into() })).unwrap_err();
        assert!(err.to_string().contains("a name is needed"), "{err}");
    }
}
