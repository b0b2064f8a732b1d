//! The prompt played while the caller enters a PIN: a built-in tone, or an 8 kHz mono WAV
//! file (PCM16, read with `hound`; G.711 µ-law or A-law, which `hound` does not read, taken
//! from the RIFF chunks directly). Played as 20 ms G.711 frames.

use std::sync::Arc;

use audio_codec_algorithms::{decode_alaw, decode_ulaw, encode_alaw, encode_ulaw};

use super::sdp::Codec;

/// Samples per 20 ms frame at 8 kHz.
pub const FRAME: usize = 160;
/// The built-in tone's frequency, in Hz.
pub const TONE_HZ: f64 = 440.0;

/// 8 kHz mono linear samples.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prompt {
    samples: Arc<[i16]>,
}

impl Prompt {
    /// Three 200 ms beeps at [`TONE_HZ`], each followed by 200 ms of silence, then 200 ms more
    /// of silence: 1.4 s.
    pub fn tone() -> Self {
        let beep = (0..1600).map(|i| {
            let t = f64::from(i) / 8000.0;
            (8000.0 * (2.0 * std::f64::consts::PI * TONE_HZ * t).sin()) as i16
        });
        let mut samples = Vec::with_capacity(8000);
        for _ in 0..3 {
            samples.extend(beep.clone());
            samples.extend(std::iter::repeat_n(0, 1600));
        }
        samples.extend(std::iter::repeat_n(0, 1600));
        Self {
            samples: samples.into(),
        }
    }

    /// A WAV file's bytes: 8 kHz, mono, PCM16 or G.711 (the configuration layer reads the
    /// file).
    pub fn from_wav(bytes: &[u8]) -> Result<Self, String> {
        if let Some((tag, channels, rate, data)) = g711_chunks(bytes) {
            if channels != 1 || rate != 8000 {
                return Err(format!(
                    "must be 8 kHz mono, not {rate} Hz with {channels} channel(s)"
                ));
            }
            let decode: fn(u8) -> i16 = if tag == 7 { decode_ulaw } else { decode_alaw };
            return Ok(Self {
                samples: data.iter().map(|&b| decode(b)).collect(),
            });
        }
        let reader = hound::WavReader::new(bytes)
            .map_err(|e| format!("not a WAV file this prompt can use: {e}"))?;
        let spec = reader.spec();
        if spec.channels != 1
            || spec.sample_rate != 8000
            || spec.bits_per_sample != 16
            || spec.sample_format != hound::SampleFormat::Int
        {
            return Err(format!(
                "must be 8 kHz mono PCM16 or G.711, not {} Hz, {} channel(s), {} bits",
                spec.sample_rate, spec.channels, spec.bits_per_sample
            ));
        }
        let samples: Result<Vec<i16>, _> = reader.into_samples::<i16>().collect();
        let samples = samples.map_err(|e| format!("bad WAV data: {e}"))?;
        if samples.is_empty() {
            return Err("the WAV file has no samples".to_owned());
        }
        Ok(Self {
            samples: samples.into(),
        })
    }

    /// How many 20 ms frames the prompt lasts.
    pub fn frames(&self) -> usize {
        self.samples.len().div_ceil(FRAME)
    }

    /// Frame `index`, encoded; the last frame is padded with silence. `None` past the end.
    pub fn frame(&self, index: usize, codec: Codec) -> Option<[u8; FRAME]> {
        let start = index.checked_mul(FRAME)?;
        let chunk = self
            .samples
            .get(start..)?
            .get(..FRAME.min(self.samples.len() - start))?;
        if chunk.is_empty() {
            return None;
        }
        let encode: fn(i16) -> u8 = match codec {
            Codec::Pcmu => encode_ulaw,
            Codec::Pcma => encode_alaw,
        };
        let mut out = [encode(0); FRAME];
        for (o, &s) in out.iter_mut().zip(chunk) {
            *o = encode(s);
        }
        Some(out)
    }

    /// The samples (tests and checks).
    pub fn samples(&self) -> &[i16] {
        &self.samples
    }
}

/// A G.711 WAV (format tag 6 A-law or 7 µ-law): (tag, channels, rate, data).
fn g711_chunks(b: &[u8]) -> Option<(u16, u16, u32, &[u8])> {
    if b.get(0..4)? != b"RIFF" || b.get(8..12)? != b"WAVE" {
        return None;
    }
    let u16_at = |i: usize| b.get(i..i + 2).map(|w| u16::from_le_bytes([w[0], w[1]]));
    let u32_at = |i: usize| {
        b.get(i..i + 4)
            .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
    };
    let mut pos = 12;
    let mut format = None;
    while let (Some(id), Some(len)) = (b.get(pos..pos + 4), u32_at(pos + 4)) {
        let body = pos + 8;
        let len = usize::try_from(len).ok()?;
        match id {
            b"fmt " => format = Some((u16_at(body)?, u16_at(body + 2)?, u32_at(body + 4)?)),
            b"data" => {
                let (tag, channels, rate) = format?;
                if tag != 6 && tag != 7 {
                    return None;
                }
                let data = b.get(body..body.checked_add(len)?.min(b.len()))?;
                return Some((tag, channels, rate, data));
            }
            _ => {}
        }
        pos = body.checked_add(len)?.checked_add(len & 1)?;
    }
    None
}

/// The strength of `freq` in `samples` (8 kHz), by the Goertzel algorithm: how a test, or a
/// listener, can tell the tone is there.
pub fn goertzel(samples: &[i16], freq: f64) -> f64 {
    let k = 2.0 * (2.0 * std::f64::consts::PI * freq / 8000.0).cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for &x in samples {
        let s = f64::from(x) + k * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    (s1 * s1 + s2 * s2 - k * s1 * s2).max(0.0).sqrt() / samples.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tone_is_440_hz_and_survives_g711() {
        let p = Prompt::tone();
        assert_eq!(p.frames(), 70);
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let decode: fn(u8) -> i16 = if codec == Codec::Pcmu {
                decode_ulaw
            } else {
                decode_alaw
            };
            let first: Vec<i16> = (0..10)
                .flat_map(|i| p.frame(i, codec).unwrap())
                .map(decode)
                .collect();
            let at_tone = goertzel(&first, TONE_HZ);
            assert!(
                at_tone > 10.0 * goertzel(&first, 1000.0)
                    && at_tone > 10.0 * goertzel(&first, 300.0),
                "{at_tone}"
            );
        }
        assert!(p.frame(70, Codec::Pcmu).is_none());
    }

    fn wav(tag: u16, rate: u32, data: &[u8]) -> Vec<u8> {
        let mut b = b"RIFF\0\0\0\0WAVEfmt ".to_vec();
        b.extend_from_slice(&16u32.to_le_bytes());
        b.extend_from_slice(&tag.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&rate.to_le_bytes());
        b.extend_from_slice(&rate.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&8u16.to_le_bytes());
        b.extend_from_slice(b"data");
        b.extend_from_slice(&(data.len() as u32).to_le_bytes());
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn wav_files() {
        let mulaw = Prompt::from_wav(&wav(7, 8000, &[encode_ulaw(1000); 200])).unwrap();
        assert_eq!(mulaw.samples().len(), 200);
        assert!((mulaw.samples()[0] - 1000).abs() < 40);
        assert!(Prompt::from_wav(&wav(6, 16000, &[0; 10]))
            .unwrap_err()
            .contains("8 kHz"));
        // PCM16 through hound.
        let mut cursor = std::io::Cursor::new(Vec::new());
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::new(&mut cursor, spec).unwrap();
        for i in 0..320 {
            w.write_sample(i as i16).unwrap();
        }
        w.finalize().unwrap();
        let pcm = Prompt::from_wav(cursor.get_ref()).unwrap();
        assert_eq!((pcm.samples().len(), pcm.frames()), (320, 2));
        assert!(Prompt::from_wav(b"not a wav").is_err());
    }
}
