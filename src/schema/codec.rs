//! How the schema's records put numbers into bytes: little-endian
//! fixed-width integers, and LEB128 varints where most values are small
//! (modes, owners, lengths), which keeps a small file's inode short.

use crate::backend::Error;

pub fn corrupt(what: &str) -> Error {
    Error::Corrupt(format!("damaged {what} record"))
}

#[derive(Default)]
pub struct Out(pub Vec<u8>);

impl Out {
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }

    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn var(&mut self, mut v: u64) -> &mut Self {
        while v >= 0x80 {
            self.0.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
        self
    }

    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
}

/// Reads a record front to back; every read fails (naming `what`) rather
/// than run past the end.
pub struct In<'a> {
    b: &'a [u8],
    what: &'static str,
}

impl<'a> In<'a> {
    pub fn new(b: &'a [u8], what: &'static str) -> In<'a> {
        In { b, what }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.b.len() < n {
            return Err(corrupt(self.what));
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }

    pub fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.take(1)?[0])
    }

    pub fn u64(&mut self) -> Result<u64, Error> {
        let mut a = [0; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }

    pub fn i64(&mut self) -> Result<i64, Error> {
        Ok(self.u64()? as i64)
    }

    pub fn var(&mut self) -> Result<u64, Error> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(corrupt(self.what))
    }

    /// Bytes behind their length (a var).
    pub fn take_var(&mut self) -> Result<&'a [u8], Error> {
        let n = usize::try_from(self.var()?).map_err(|_| corrupt(self.what))?;
        self.take(n)
    }

    pub fn var32(&mut self) -> Result<u32, Error> {
        u32::try_from(self.var()?).map_err(|_| corrupt(self.what))
    }

    /// What is left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.b)
    }

    pub fn is_empty(&self) -> bool {
        self.b.is_empty()
    }

    /// Fails unless everything was read.
    pub fn end(&self) -> Result<(), Error> {
        match self.b.is_empty() {
            true => Ok(()),
            false => Err(corrupt(self.what)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_stay_short() {
        for v in [0, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut o = Out::default();
            o.var(v);
            let mut i = In::new(&o.0, "test");
            assert_eq!(i.var().unwrap(), v);
            i.end().unwrap();
        }
        let mut o = Out::default();
        o.var(127);
        assert_eq!(o.0.len(), 1);
        assert!(In::new(&[0x80, 0x80], "test").var().is_err(), "runs out");
        assert!(In::new(&[0xff; 11], "test").var().is_err(), "too long");
    }
}
