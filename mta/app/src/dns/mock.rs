//! A resolver that answers from memory, for tests: each (name, kind) has
//! the records (with their proofs) or the error it is given; anything else
//! fails as a resolver without network would.

use std::collections::HashMap;

use super::{Answer, Data, Error, Kind, Proof, Record, Resolver};

#[derive(Default, Clone)]
pub struct Zone {
    answers: HashMap<(String, Kind), Result<Vec<Record>, Error>>,
}

impl Zone {
    /// Answers `kind` at `name` (any case, with or without the trailing
    /// dot) with `answer`.
    pub fn with(mut self, name: &str, kind: Kind, answer: Result<Vec<Record>, Error>) -> Zone {
        self.answers.insert((key(name), kind), answer);
        self
    }

    pub fn secure(data: Data) -> Record {
        Record {
            data,
            proof: Proof::Secure,
        }
    }

    pub fn insecure(data: Data) -> Record {
        Record {
            data,
            proof: Proof::Insecure,
        }
    }

    pub fn bogus(data: Data) -> Record {
        Record {
            data,
            proof: Proof::Bogus,
        }
    }
}

fn key(name: &str) -> String {
    super::absolute(&name.to_lowercase())
}

impl Resolver for Zone {
    fn lookup<'a>(&'a self, name: &'a str, kind: Kind, validate: bool) -> Answer<'a> {
        let answer = match self.answers.get(&(key(name), kind)) {
            Some(Ok(records)) => Ok(records
                .iter()
                .map(|r| Record {
                    data: r.data.clone(),
                    // Without validation nothing is proven either way.
                    proof: if validate { r.proof } else { Proof::Insecure },
                })
                .collect()),
            Some(Err(Error::NoSuchName { secure })) => Err(Error::NoSuchName {
                secure: *secure && validate,
            }),
            Some(Err(Error::NoRecords { secure })) => Err(Error::NoRecords {
                secure: *secure && validate,
            }),
            Some(Err(e)) => Err(e.clone()),
            None => Err(Error::Failed(format!(
                "no answer for {name} in the test zone"
            ))),
        };
        Box::pin(async move { answer })
    }
}
